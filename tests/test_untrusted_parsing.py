"""Property-based tests (hypothesis): whatever a server's records or a dataset's metadata.csv hold, parsing
never crashes, and whatever it accepts is safe to use as a file name, a URL and a byte count."""

from __future__ import annotations

import csv
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinlesion import metadata, raw_layout
from skinlesion.errors import PipelineError
from skinlesion.io import check_inside
from skinlesion.sources.local import layouts as local_layouts
from skinlesion.sources.local import selection as local_selection
from skinlesion.sources.local import writer as local_writer
from skinlesion.sources.isic import selection
from skinlesion.sources.isic.options import from_config

from conftest import base_params

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
API = "http://127.0.0.1:8000/api/v2"
OPTIONS = from_config({"api_url": API}, env={})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
hostile_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["../../../escaped", "/etc/passwd", "ISIC_1\n", "ISIC_1\x00", "ISIC_" + "1" * 300, ".", "..",
                     "CC-BY/../../x", "CC-BY", "CC-0", "CC-BY-NC", "a" * 64, "a" * 65, "ISIC_0015719", " x"]),
)
ids = st.one_of(st.from_regex(r"\AISIC_[0-9]{7}\Z"), hostile_text, st.integers(), st.none(), json_values)
urls = st.one_of(
    st.text(max_size=40),
    st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}",
              st.sampled_from(["http", "https", "file", "ftp", "HTTP", "javascript", ""]),
              st.sampled_from(["127.0.0.1:8000", "127.0.0.1", "isic-archive.s3.amazonaws.com", "evil.example",
                               "isic-archive.s3.amazonaws.com.evil.example", "[::1]", "user@evil.example", ""]),
              st.text(max_size=20)),
)
sizes = st.one_of(st.integers(min_value=-5, max_value=10**12), st.none(), st.booleans(), st.text(max_size=5),
                  st.floats(allow_nan=True))
def mostly(good, bad):
    """Usually a valid value, sometimes a hostile one: records that are one field away from usable."""
    return st.integers(0, 4).flatmap(lambda i: bad if i == 0 else good)


good_ids = st.from_regex(r"\AISIC_[0-9]{7}\Z")
good_urls = st.builds(lambda host, name, ext: f"https://{host}/images/{name}{ext}",
                      st.sampled_from(["127.0.0.1:8000", "isic-archive.s3.amazonaws.com"]),
                      st.text("abcXYZ_019./", max_size=12), st.sampled_from([".jpg", ".png", ".JPEG", "", ".exe"]))
near_valid = st.fixed_dictionaries({
    "isic_id": mostly(good_ids, ids),
    "copyright_license": mostly(st.sampled_from(["CC-0", "CC-BY", "CC-BY-NC"]), hostile_text),
    "attribution": mostly(st.text(max_size=30), json_values),
    "files": st.fixed_dictionaries({"full": st.fixed_dictionaries(
        {"url": mostly(good_urls, urls)}, optional={"size": mostly(st.integers(1, 10**7), sizes)})}),
    "metadata": mostly(st.fixed_dictionaries({"clinical": st.dictionaries(st.text(max_size=12), json_values,
                                                                          max_size=5)}), json_values),
})
records = st.one_of(
    near_valid,
    near_valid,
    json_values,
    st.fixed_dictionaries(
        {"isic_id": ids},
        optional={
            "copyright_license": st.one_of(hostile_text, json_values),
            "attribution": st.one_of(st.text(max_size=30), json_values),
            "files": st.one_of(json_values, st.fixed_dictionaries(
                {"full": st.one_of(json_values, st.fixed_dictionaries({"url": urls}, optional={"size": sizes}))})),
            "metadata": st.one_of(json_values, st.fixed_dictionaries(
                {}, optional={"acquisition": json_values,
                              "clinical": st.dictionaries(st.text(max_size=12), json_values, max_size=5)})),
        },
    ),
)


def _refused(exc: selection.HostRefused) -> None:
    """A file host not allowed stops the download (issue 18): one line naming the host and the setting."""
    message = str(exc)
    assert "\n" not in message and len(message) < 1000 and "allowed_hosts" in message


@SETTINGS
@given(records)
def test_a_record_the_client_accepts_is_safe_to_use(record):
    try:
        problem = selection.record_problem(record, OPTIONS)  # a reason to skip, or HostRefused: nothing else
    except selection.HostRefused as exc:
        _refused(exc)
        url = record["files"]["full"]["url"]
        assert selection.hosts.host_problem(url, OPTIONS.api_url, OPTIONS.allowed_hosts) is not None
        return
    if problem is not None:
        assert isinstance(problem, str) and len(problem) < 100
        return
    name = selection.file_name(record, thumbnails=False)
    assert raw_layout.ISIC_ID.fullmatch(name.rsplit(".", 1)[0]) and name.rsplit(".", 1)[1] in ("jpg", "jpeg", "png")
    images = Path("/nonexistent-root/images")
    assert check_inside(images / name, images).parent == images
    url, size = selection.file_info(record, thumbnails=False)
    assert url.split(":", 1)[0] in ("http", "https")
    assert size is None or 1 <= size <= OPTIONS.max_body_bytes
    row = selection.flatten(record)
    license_name = row.get("copyright_license")
    assert license_name is None or license_name == "" or raw_layout.license_file_name(license_name)


@SETTINGS
@given(st.lists(st.lists(records, max_size=6), min_size=1, max_size=4))
def test_selection_over_any_pages_keeps_only_usable_unique_records(pages):
    class Client:
        def search_pages(self, query, collections, page_size=None, **_):  # want, usable: the real client's
            for i, results in enumerate(pages):
                yield (sum(map(len, pages)) if i == 0 else None), results

    skipped: Counter = Counter()
    try:
        found, _ = selection._collect(Client(), "", (), None, None, set(), OPTIONS, skipped)
    except selection.HostRefused as exc:  # a record on a host not allowed stops the listing, naming it
        _refused(exc)
        return
    assert all(selection.record_problem(r, OPTIONS) is None for r in found)
    assert len({r["isic_id"] for r in found}) == len(found)
    assert len(found) + sum(skipped.values()) <= sum(map(len, pages))


cells = st.one_of(st.text(max_size=30), hostile_text,
                  st.sampled_from(["Benign", "Malignant", "Indeterminate", "", "male", "female", "45", "nan"]))
columns = st.sampled_from(["copyright_license", "attribution", "diagnosis_1", "diagnosis_3", "sex",
                           "age_approx", "patient_id", "lesion_id", "benign_malignant", "diagnosis", "target",
                           "anatom_site_general", "clin_size_long_diam_mm"])
tables = st.lists(
    st.tuples(mostly(good_ids, cells), st.dictionaries(columns, cells, max_size=8),
              mostly(st.sampled_from(["CC-0", "CC-BY", "CC-BY-NC"]), cells))
    .map(lambda t: {**t[1], "isic_id": t[0], "copyright_license": t[2]}),
    min_size=1, max_size=12)


def _file_name_ok(name: str) -> bool:
    return (bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")
            and len(os.fsencode(name)) < 200 and not name.startswith("."))


@SETTINGS
@given(tables)
def test_any_metadata_csv_parses_without_a_crash_and_writes_only_inside(rows):
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "dataset", Path(tmp) / "out" / "raw"
        (root / "images").mkdir(parents=True)
        names = sorted({k for r in rows for k in r})
        with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, names)
            writer.writeheader()
            writer.writerows([{k: v.replace("\x00", "") for k, v in r.items()} for r in rows])
        for r in rows:
            name = r["isic_id"].strip()
            if _file_name_ok(name):
                try:
                    (root / "images" / f"{name}.jpg").write_bytes(b"not decoded here")
                except OSError:
                    pass
        try:
            loaded = local_layouts.read_isic_cli(root)
            kept, counts = local_selection.match(loaded)
        except PipelineError:
            return
        for rec in kept:
            assert raw_layout.record_problem(rec) is None
        assert counts["rows"] == len(loaded.records)
        if not kept:
            return
        local_writer.write(kept, loaded, out)
        written = [p for p in Path(tmp).rglob("*") if p.is_file() and root not in p.parents]
        assert all(out in p.parents for p in written)
        assert {p.name for p in (out / "images").iterdir()} == {f"{r['isic_id']}.jpg" for r in kept}
        try:
            metadata.build(out, base_params())
        except PipelineError:
            pass


raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"isic_id", b",", b"\n", b"\r", b'"', b"\xff", b"\x00", b"\t", b"ISIC_0000001",
                              b"\xef\xbb\xbf", b" ", b"diagnosis_1", b"Benign"]), max_size=40).map(b"".join),
)


@SETTINGS
@given(raw_bytes)
def test_any_metadata_csv_bytes_read_into_a_frame_or_a_pipeline_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metadata.csv").write_bytes(data)
        try:
            frame = raw_layout.read_metadata(tmp)
        except PipelineError as exc:
            assert "\n" not in str(exc) and "metadata.csv" in str(exc)
            return
        assert "isic_id" in frame.columns


def test_a_damaged_metadata_csv_for_predict_is_a_pipeline_error(tmp_path):
    from skinlesion import prediction

    path = tmp_path / "new.csv"
    path.write_bytes(b"isic_id,age_approx\nISIC_0000001,4\xff5\n")
    with pytest.raises(PipelineError, match="cannot read .*new.csv as CSV"):
        prediction.prepare_metadata(path, None)


@pytest.mark.parametrize("value", ["ISIC_1\n", "ISIC_1\r", "\nISIC_1", "ISIC_1\x00", "ISIC_1 ", "ISIC_" + "1" * 60])
def test_the_id_pattern_is_anchored_at_both_ends(value):
    assert raw_layout.id_problem(value) == "bad isic_id"
