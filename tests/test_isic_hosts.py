"""File hosts as the archive has them, signed URLs that expire, and records lacking optional fields
(issue 18, items 1-3), against the stand-in: API and files on two loopback hosts, three URL shapes in turn."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import FakeIsic, Fault, client_options, real_host_names, shape_of  # noqa: E402

from skinlesion import cli  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.sources.isic import client as client_module  # noqa: E402
from skinlesion.sources.isic import hosts  # noqa: E402
from skinlesion.sources.isic.download import download  # noqa: E402
from skinlesion.sources.isic.options import DEFAULT_API_URL  # noqa: E402
from skinlesion.sources.isic.retry import printable  # noqa: E402
from skinlesion.sources.isic.selection import HostRefused, url_problem  # noqa: E402

pytestmark = pytest.mark.timeout(60)
API = "https://api.isic-archive.com/api/v2"
SIGNED = ("https://content.isic-archive.com/0b9c6c2e-7f5e-4c3b-9d43-1c3a6f0e2a11/0b9c6c2e.jpg"
          "?Expires=1735689600&Signature=Qx~7mB-Zk3_aa&Key-Pair-Id=K2JCJMDEHXQW5F")


@pytest.fixture
def server():
    with FakeIsic(30) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch):
    monkeypatch.delenv("ISIC_API_URL", raising=False)


@pytest.mark.parametrize("url", [
    SIGNED,
    "https://isic-archive.s3.amazonaws.com/images/ISIC_0015719.jpg",
    "https://isic-archive.s3.us-east-1.amazonaws.com/images/ISIC_0015719.jpg",
    "https://isic-archive.s3.eu-central-1.amazonaws.com/images/ISIC_0015719.png",
    "https://isic-archive.s3-us-west-2.amazonaws.com/images/ISIC_0015719.jpg",
    "https://isic-archive.s3.dualstack.us-east-1.amazonaws.com/images/ISIC_0015719.jpg",
    "https://s3.amazonaws.com/isic-archive/images/ISIC_0015719.jpg",
    "https://s3.us-east-1.amazonaws.com/isic-archive/thumbnails/ISIC_0015719_thumbnail.jpg",
    "https://isic-archive.s3.amazonaws.com/images/ISIC_0015719.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=abc123",
    "https://api.isic-archive.com/media/ISIC_0015719.jpg",
])
def test_the_default_allow_list_accepts_the_archives_real_hosts(url):
    assert url_problem(url, API, ()) is None


@pytest.mark.parametrize("url, why", [
    ("https://evil.example/x.jpg", "'evil.example' not allowed (data.isic.allowed_hosts)"),
    ("https://isic-archive.s3.amazonaws.com.evil.example/x.jpg", "not allowed"),
    ("https://content.isic-archive.com.evil.example/x.jpg", "not allowed"),
    ("https://other-bucket.s3.amazonaws.com/x.jpg", "not allowed"),
    ("https://s3.amazonaws.com/other-bucket/isic-archive/x.jpg", "not allowed"),
    ("https://s3.amazonaws.com/isic-archive/../other/x.jpg", "not allowed"),
    ("https://s3.amazonaws.com/isic-archive/%2e%2e/other/x.jpg", "not allowed"),
    ("http://isic-archive.s3.amazonaws.com/images/ISIC_0015719.jpg", "not https"),
    ("ftp://isic-archive.s3.amazonaws.com/x.jpg", "unsupported URL scheme"),
])
def test_the_url_check_refuses_other_hosts_and_plain_http(url, why):
    assert why in url_problem(url, API, ())


def test_allowed_hosts_adds_to_the_defaults():
    assert url_problem("https://mirror.example/x.jpg", API, ("mirror.example",)) is None
    assert url_problem(SIGNED, API, ("mirror.example",)) is None
    # with an http API (a local stand-in) http file URLs are fine
    assert url_problem("http://127.0.1.1:8001/images/x.jpg", "http://127.0.0.1:8000/api/v2", ("127.0.1.1",)) is None


def test_signatures_are_never_shown_and_the_extension_comes_from_the_path():
    shown = printable(f"could not fetch {SIGNED}: refused", 300)
    assert "Qx~7mB" not in shown and "K2JCJ" not in shown and "[redacted]" in shown
    assert "content.isic-archive.com" in shown and "Expires=1735689600" in shown
    assert "abc123" not in hosts.redact("https://x.example/a.jpg?X-Amz-Signature=abc123&X-Amz-Credential=AKIA")
    assert hosts.is_signed(SIGNED) and not hosts.is_signed("https://isic-archive.s3.amazonaws.com/images/a.jpg")
    from skinlesion.sources.isic.selection import file_name
    record = {"isic_id": "ISIC_0015719", "files": {"full": {"url": SIGNED.replace(".jpg?", ".png?")}}}
    assert file_name(record, False) == "ISIC_0015719.png"


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_three_url_shapes_on_another_host_download_completely_with_signed_queries_intact(server, tmp_path):
    records = server.records
    assert {shape_of(r["isic_id"]) for r in records} == {"cloudfront", "s3-virtual-hosted", "s3-path-style"}
    assert all(urlparse(r["files"]["full"]["url"]).hostname == server.files_host != server.host for r in records)
    out = tmp_path / "isic"
    download(client_options(server), out, progress=False)
    for record in records:
        name = record["isic_id"] + Path(urlparse(record["files"]["full"]["url"]).path).suffix
        assert (out / name).read_bytes() == server.file_bytes(record)
    signed = [r for r in records if shape_of(r["isic_id"]) == "cloudfront"]
    for record in signed:  # the query reached the file host exactly as the record gave it
        (hit,) = server.requests_to(server.key_of(record))
        assert hit["raw_query"] == urlparse(record["files"]["full"]["url"]).query and hit["status"] == 200
        assert hit["host"].startswith(server.files_host)


def test_the_record_lacking_optional_fields_is_kept_with_empty_cells(server, tmp_path):
    bare = server.records[-1]
    assert bare["metadata"]["clinical"] == {}  # as the archive sends it: the key there, empty
    out = tmp_path / "isic"
    download(client_options(server), out, progress=False)
    row = next(r for r in read_rows(out / "metadata.csv") if r["isic_id"] == bare["isic_id"])
    assert row["diagnosis_1"] == "" and row["sex"] == "" and row["pixels_x"] == str(bare["metadata"]["acquisition"]["pixels_x"])
    # an answer without the key at all (the archive never sends one; isic-cli would stop on it) is kept too
    server.record_hook = lambda r: {**r, "metadata": {"acquisition": r["metadata"]["acquisition"]}} \
        if r["isic_id"] == bare["isic_id"] else r
    download(client_options(server), tmp_path / "no-clinical", progress=False)
    rows = {r["isic_id"]: r for r in read_rows(tmp_path / "no-clinical" / "metadata.csv")}
    assert rows[bare["isic_id"]] == row
    download(client_options(server, thumbnails=True), tmp_path / "thumbs", progress=False)
    assert (tmp_path / "thumbs" / f"{bare['isic_id']}.jpg").read_bytes() == server.file_bytes(bare, "thumbnail_256")


def test_a_file_host_not_allowed_is_named_in_one_line_at_the_first_page(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 3)  # ten pages, every file on the host not allowed
    code = cli.main(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("skinlesion download:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"'{server.files_host}'" in lines[0] and "data.isic.allowed_hosts" in lines[0] and "--allowed-hosts" in lines[0]
    assert "paging does not advance" not in err
    assert len(server.requests_to("/images/search/")) == 1  # stopped at the first refusal, page 1
    assert not server.requests_to("/s3/")


def test_a_partly_refused_selection_exits_non_zero_with_the_counts(server, tmp_path, capsys):
    def hook(record):
        if int(record["isic_id"][5:]) % 2:
            record = json.loads(json.dumps(record))
            record["files"]["full"]["url"] = "ftp://x.example/a.jpg"
        return record

    server.record_hook = hook
    code = cli.main(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url,
                     "--allowed-hosts", server.files_host])
    err = capsys.readouterr().err
    assert code == 2
    assert "15 of the 30 record(s)" in err and "the other 15 image(s) are complete" in err


def test_an_expired_signed_url_fetches_the_record_again_and_the_download_goes_on(server, tmp_path):
    server.search_ttl = -60  # every CloudFront URL in the search pages has expired; images/<id>/ signs anew
    out = tmp_path / "isic"
    download(client_options(server), out, progress=False)
    signed = [r for r in server.records if shape_of(r["isic_id"]) == "cloudfront"]
    assert signed
    for record in signed:
        hits = server.requests_to(server.key_of(record))
        assert [h["status"] for h in hits] == [403, 200]
        assert len(server.requests_to(f"/images/{record['isic_id']}/")) == 1
        name = record["isic_id"] + Path(urlparse(record["files"]["full"]["url"]).path).suffix
        assert (out / name).read_bytes() == server.file_bytes(record)
    unsigned = [r for r in server.records if shape_of(r["isic_id"]) != "cloudfront"]
    assert not any(server.requests_to(f"/images/{r['isic_id']}/") for r in unsigned)


def test_a_signed_url_refused_every_time_is_given_up_after_max_refreshes_without_showing_it(server, tmp_path):
    server.sign_ttl = -60  # fresh records bring expired URLs too
    with pytest.raises(PipelineError, match="max_refreshes") as info:
        download(client_options(server, max_refreshes=2, limit=3), tmp_path / "isic", progress=False)
    victim = server.records[0]
    assert shape_of(victim["isic_id"]) == "cloudfront"
    assert len(server.requests_to(server.key_of(victim))) == 3  # the first URL and two fresh ones
    assert len(server.requests_to(f"/images/{victim['isic_id']}/")) == 2
    assert "Signature=" not in str(info.value).replace("Signature=[redacted]", "")


def test_a_403_on_an_unsigned_url_is_not_refreshed(server, tmp_path):
    victim = server.records[1]
    assert shape_of(victim["isic_id"]) == "s3-virtual-hosted"
    server.faults.append(Fault(server.key_of(victim), status=403, times=None))
    with pytest.raises(PipelineError, match="403"):
        download(client_options(server, limit=3), tmp_path / "isic", progress=False)
    assert not server.requests_to(f"/images/{victim['isic_id']}/")


def test_a_resume_days_later_uses_fresh_urls(server, tmp_path):
    server.faults.append(Fault("/s3/images/", drop_after=500, times=1))
    server.faults.append(Fault("/s3/images/", status=500, times=None))
    out = tmp_path / "isic"
    with pytest.raises(PipelineError, match="could not be downloaded"):
        download(client_options(server, retries=0, limit=6), out, progress=False)
    assert list((out).glob(".*.part"))
    server.faults.clear()
    server.clock += 8 * 24 * 3600  # a week and a day later: every URL the first run was given has expired
    mark = len(server.log)
    download(client_options(server, limit=6), out, progress=False)
    files = [e for e in server.log[mark:] if e["path"].startswith("/s3/")]
    assert files and all(e["status"] in (200, 206) for e in files)  # no stale URL: no 403
    assert any(e["status"] == 206 for e in files)  # partial files continued
    for record in server.records[:6]:
        name = record["isic_id"] + Path(urlparse(record["files"]["full"]["url"]).path).suffix
        assert (out / name).read_bytes() == server.file_bytes(record)


def test_a_fresh_record_on_a_host_not_allowed_stops_the_download_naming_it(server, tmp_path):
    server.search_ttl = -60  # the search pages' signed URLs have expired: each is fetched again

    def hook(record):  # ... and the fresh record (a URL still valid) points somewhere else
        url = record["files"]["full"]["url"]
        query = dict(part.split("=", 1) for part in urlparse(url).query.split("&") if "=" in part)
        if int(query.get("Expires", 0)) > server.now():
            record = json.loads(json.dumps(record))
            record["files"]["full"]["url"] = "https://elsewhere.example/x.jpg"
        return record

    server.record_hook = hook
    with pytest.raises(HostRefused, match="'elsewhere.example' is not allowed"):
        download(client_options(server, limit=4), tmp_path / "isic", progress=False)


def test_a_dry_run_names_a_file_host_not_allowed_too(server, tmp_path, capsys):
    code = cli.main(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--dry-run"])
    assert code == 2
    assert f"'{server.files_host}' is not allowed" in capsys.readouterr().err
    code = cli.main(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--dry-run",
                     "--allowed-hosts", server.files_host])
    assert code == 0 and "dry run: 30 images" in capsys.readouterr().out


def test_over_https_on_two_hosts_the_download_completes_and_an_untrusted_certificate_stops_it(tmp_path, monkeypatch,
                                                                                              capsys):
    """The archive is reached over HTTPS, API and files on different hosts: the test archive with a certificate
    of its own (FakeIsic(tls=True)); REQUESTS_CA_BUNDLE is how a user trusts a proxy's CA, as requests reads it."""
    with FakeIsic(12, tls=True) as server:
        assert server.api_url.startswith("https://") and server.files_origin.startswith("https://")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.cert_file)
        download(client_options(server), tmp_path / "ok", progress=False)
        got = {p.stem: p.read_bytes() for p in (tmp_path / "ok").iterdir() if p.suffix in (".jpg", ".png")}
        assert got == {r["isic_id"]: server.file_bytes(r) for r in server.records}
        assert {e["host"].split(":")[0] for e in server.log} == {server.host, server.files_host}

        # not trusted: one line naming the host and what to check, at the first request, never retried
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.setenv("CURL_CA_BUNDLE", "")  # requests' other variable: nothing here trusts the test CA
        server.log.clear()
        capsys.readouterr()
        code = cli.main(["download", "--out", str(tmp_path / "untrusted"), "--api-url", server.api_url,
                         "--allowed-hosts", server.files_host, "--retries", "5"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and "retry 1/" not in err, err
        line = next(line for line in err.splitlines() if line.startswith("skinlesion download:"))
        assert f"TLS certificate of {server.host} could not be verified" in line and "REQUESTS_CA_BUNDLE" in line
        assert not server.log  # the handshake failed: no request reached the server, and none was repeated


def test_the_archives_real_host_names_download_completely_with_no_setting_changed(tmp_path, monkeypatch):
    """The three URL shapes on the archive's own host names, the API on its own: `skinlesion download DIR -l 0`
    with every default (api.isic-archive.com, no --allowed-hosts) fetches every image. Only name resolution is
    stood in for (real_host_names), and the test archive's certificate trusted as a user trusts a proxy's."""
    with FakeIsic(12, real_hosts=True) as server, real_host_names(server):
        assert server.api_url == DEFAULT_API_URL  # the default the command uses when given no --api-url
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.cert_file)
        assert cli.main(["download", str(tmp_path / "out"), "-l", "0"]) == 0
        got = {p.stem: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.suffix in (".jpg", ".png")}
        assert got == {r["isic_id"]: server.file_bytes(r) for r in server.records}
        hosts = {e["host"] for e in server.log}
        assert hosts == {"api.isic-archive.com", "content.isic-archive.com", "isic-archive.s3.us-east-1.amazonaws.com",
                         "s3.amazonaws.com"}
        signed = [e for e in server.log if e["host"] == "content.isic-archive.com"]
        assert signed and all({"Expires", "Signature", "Key-Pair-Id"} <= set(e["query"]) for e in signed)
