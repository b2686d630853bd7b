"""The ISIC client against a local ISIC-compatible server: selection, layout, paging, thumbnails."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import LICENSE_BODIES, FakeIsic, Fault, client_config, client_options, flat, images_in  # noqa: E402

from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.raw_layout import LICENSE_TEXTS  # noqa: E402
from skinlesion.sources.isic import client as client_module  # noqa: E402
from skinlesion.sources.isic.download import download  # noqa: E402
from skinlesion.sources.isic.options import parse_caps, parse_collections  # noqa: E402

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server():
    with FakeIsic(30) as fake:
        yield fake


options = client_options


def ext_of(record, kind="full"):
    return Path(urlparse(record["files"][kind]["url"]).path).suffix


def expected_csv(records):
    """isic-cli's metadata.csv, computed here independently of the client."""
    rows = [flat(r) for r in records]
    fixed = ["isic_id", "attribution", "copyright_license"]
    columns = fixed + sorted({k for row in rows for k in row} - set(fixed))

    def cell(value):
        return "" if value is None else str(value)  # True/False, 45, 2.5, "7.5" as written

    return columns, [[cell(row.get(c)) for c in columns] for row in rows]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_complete_download_is_byte_identical_with_isic_cli_layout(server, tmp_path):
    out = tmp_path / "isic"
    outcome = download(options(server), out, progress=False)
    records = server.records
    assert len(records) == 30

    names = sorted(p.name for p in images_in(out))
    assert names == sorted(r["isic_id"] + ext_of(r) for r in records)
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".jpg") for n in names)
    for record in records:
        data = (out / (record["isic_id"] + ext_of(record))).read_bytes()
        assert data == server.file_bytes(record)

    columns, rows = read_csv(out / "metadata.csv")
    want_columns, want_rows = expected_csv(records)
    assert columns == want_columns
    assert columns[:3] == ["isic_id", "attribution", "copyright_license"]
    assert rows == want_rows
    # fields left out of a record are empty cells, not "None" or "nan"
    by_id = {row[0]: dict(zip(columns, row)) for row in rows}
    missing_sex = [r for r in records if "sex" not in r["metadata"].get("clinical", {})]
    assert missing_sex, "the fake data should have records without sex"
    assert all(by_id[r["isic_id"]]["sex"] == "" for r in missing_sex)
    assert not any(cell in ("None", "nan") for row in rows for cell in row)

    # isic-cli's attribution.txt: most images first (ties by name), "Anonymous" last, one blank line between
    counts = {}
    for r in records:
        counts[r["attribution"]] = counts.get(r["attribution"], 0) + 1
    order = sorted(counts, key=lambda a: (a == "Anonymous", -counts[a], a))
    assert (out / "attribution.txt").read_text(encoding="utf-8") == "\n\n".join(order)
    for name in {r["copyright_license"] for r in records}:
        assert (out / "licenses" / f"{name}.txt").read_text(encoding="utf-8") == LICENSE_BODIES[name]

    summary = outcome.summary
    assert summary["api_url"] == server.api_url
    assert summary["thumbnails"] is False and summary["files"] == "full"
    assert summary["selected"] == 30 and summary["matched"] == 30
    assert summary["bytes"] == sum(r["files"]["full"]["size"] for r in records)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert not (out / ".isic-download.lock").exists()


def test_paging_follows_next_until_null_with_count_on_first_page_only(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 7)
    out = tmp_path / "isic"
    download(options(server), out, progress=False)
    searches = server.requests_to("/images/search/")
    assert len(searches) == 5  # 30 records in pages of 7
    assert "cursor" not in searches[0]["query"]
    assert all("cursor" in s["query"] for s in searches[1:])
    _, rows = read_csv(out / "metadata.csv")
    ids = [row[0] for row in rows]
    assert ids == [r["isic_id"] for r in server.records]  # every record once, in the archive's order


def test_query_collections_and_limit_select_on_metadata(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 4)
    query = "sex:female AND -anatom_site_1:Trunk"
    want = server.matching(query, (70, 212))
    assert len(want) > 6
    out = tmp_path / "isic"
    download(options(server, query=query, collections=[70, 212], limit=6), out, progress=False)
    _, rows = read_csv(out / "metadata.csv")
    assert [row[0] for row in rows] == [r["isic_id"] for r in want[:6]]
    assert len(server.requests_to("/s3/images/")) == 6
    # paging stopped once the limit was reached
    assert len(server.requests_to("/images/search/")) == 2


@pytest.mark.parametrize("limit", [None, 4])
def test_per_class_caps_on_diagnosis_1(server, tmp_path, limit):
    caps = {"benign": 3, "malignant": 2}
    records = server.matching("", ())
    expected = []
    for cls, cap in caps.items():
        expected += [r for r in records if r["metadata"].get("clinical", {}).get("diagnosis_1", "").lower() == cls][:cap]
    expected.sort(key=lambda r: r["isic_id"])
    if limit:
        expected = expected[:limit]
    out = tmp_path / "isic"
    outcome = download(options(server, max_per_class=caps, limit=limit), out, progress=False)
    _, rows = read_csv(out / "metadata.csv")
    assert [row[0] for row in rows] == [r["isic_id"] for r in expected]
    assert sorted(p.stem for p in images_in(out)) == [r["isic_id"] for r in expected]
    counts = {}
    for r in expected:
        key = r["metadata"].get("clinical", {})["diagnosis_1"].lower()
        counts[key] = counts.get(key, 0) + 1
    assert outcome.summary["per_class"] == counts
    if not limit:
        assert counts == caps
    # indeterminate and unlabelled images were never asked for
    assert all("diagnosis_1:" in s["query"]["query"][0] for s in server.requests_to("/images/search/"))


def test_thumbnails_fetch_the_256px_files_and_are_recorded(server, tmp_path):
    out = tmp_path / "thumbs"
    outcome = download(options(server, thumbnails=True, limit=5), out, progress=False)
    records = server.records[:5]
    for record in records:
        data = (out / f"{record['isic_id']}.jpg").read_bytes()
        assert data == server.file_bytes(record, "thumbnail_256")
    assert not server.requests_to("/s3/images/")
    assert len(server.requests_to("/s3/thumbnails/")) == 5
    assert outcome.summary["thumbnails"] is True and outcome.summary["files"] == "thumbnail_256"
    assert outcome.summary["bytes"] == sum(r["files"]["thumbnail_256"]["size"] for r in records)


def test_license_texts_fall_back_to_built_ins_when_the_archive_fails(server, tmp_path):
    server.faults.append(Fault("/zip-download/license-file/", status=500, times=None))
    out = tmp_path / "isic"
    download(options(server, limit=3), out, progress=False)
    used = {r["copyright_license"] for r in server.records[:3]}
    assert sorted(p.stem for p in (out / "licenses").iterdir()) == sorted(used)
    for name in used:
        assert (out / "licenses" / f"{name}.txt").read_text(encoding="utf-8") == LICENSE_TEXTS[name]


def test_empty_selection_is_an_error(server, tmp_path):
    with pytest.raises(PipelineError, match="matched no images"):
        download(options(server, query='diagnosis_3:"No such thing"'), tmp_path / "x", progress=False)


def test_option_parsing_errors_are_clear():
    assert parse_collections("70, 65,70") == (70, 65)
    assert parse_caps("benign=5000,malignant=5000") == (("benign", 5000), ("malignant", 5000))
    with pytest.raises(PipelineError, match="benign, malignant, indeterminate"):
        parse_caps("melanoma=3")
    with pytest.raises(PipelineError, match="CLASS=N"):
        parse_caps("benign:3")
    with pytest.raises(PipelineError, match="integers"):
        parse_collections("seventy")


def test_full_files_and_thumbnails_never_mix_in_one_folder(server, tmp_path):
    out = tmp_path / "isic"
    server.faults.append(Fault("/s3/thumbnails/", status=500, times=None))
    with pytest.raises(PipelineError, match="could not be downloaded"):
        download(options(server, thumbnails=True, limit=3, retries=0), out, progress=False)
    server.faults.clear()
    with pytest.raises(PipelineError, match="holds thumbnail_256 files"):
        download(options(server, limit=3), out, progress=False)
    assert not server.requests_to("/s3/images/")
    download(options(server, thumbnails=True, limit=3), out, progress=False)  # the same kind continues
    assert not (out / ".isic-download.json").exists()


def test_one_image_record_and_a_missing_one(server):
    from skinlesion.sources.isic.client import IsicClient

    wanted = server.records[5]
    with IsicClient(options(server)) as client:
        assert client.image(wanted["isic_id"]) == wanted
        with pytest.raises(PipelineError, match="404.*Not found"):
            client.image("ISIC_0000000")
    assert len(server.requests_to("/images/ISIC_0000000/")) == 1  # a 404 is not retried


def test_isic_cli_flag_spellings_select_as_ours(server, tmp_path, capsys):
    """`skinlesion download -s Q -c C -l N DIR`, isic-cli's spellings (isic_cli/cli/image.py), downloads what
    `--query Q --collections C --limit N --out DIR` does; -l 0 is isic-cli's 'no limit'."""
    from skinlesion import cli

    query, both = "sex:female", ["--api-url", server.api_url, "--allowed-hosts", server.files_host]
    assert cli.main(["download", "--out", str(tmp_path / "ours"), "--query", query, "--collections", "70,212",
                     "--limit", "5", *both]) == 0
    assert cli.main(["download", "-s", query, "-c", "70,212", "-l", "5", *both, str(tmp_path / "theirs")]) == 0
    assert cli.main(["download", "--search", query, "-l", "0", *both, str(tmp_path / "all")]) == 0
    assert (tmp_path / "ours" / "metadata.csv").read_bytes() == (tmp_path / "theirs" / "metadata.csv").read_bytes()
    assert len(read_csv(tmp_path / "theirs" / "metadata.csv")[1]) == 5
    everything = [r["isic_id"] for r in server.matching(query, ())]
    assert [row[0] for row in read_csv(tmp_path / "all" / "metadata.csv")[1]] == everything
    capsys.readouterr()
    assert cli.main(["download", "--out", str(tmp_path / "a"), str(tmp_path / "b"), *both]) == 2
    assert "two folders given" in capsys.readouterr().err
