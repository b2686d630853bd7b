"""The archive imitated badly on purpose (loopback only): every attack of issue 9 against the real client.

Each test asserts what the attack must not achieve: nothing written outside the output folder, time, disk and
memory bounded, and one clear line (exit status 2) where the command cannot go on. docs/security.md maps each
attack to its test here.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).parent))

import isic_server  # noqa: E402
from isic_server import FakeIsic, Fault, _cursor, client_config, client_options, images_in  # noqa: E402

from skinlesion import cli, sources  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.sources.isic import client as client_module  # noqa: E402
from skinlesion.sources.isic import transfer as transfer_module  # noqa: E402
from skinlesion.sources.isic.download import LOCK_NAME, IncompleteDownload, download  # noqa: E402
from skinlesion.sources.isic.selection import HostRefused  # noqa: E402

from conftest import base_params  # noqa: E402

pytestmark = pytest.mark.timeout(60)
KNOWN_LICENSES = {"CC-0.txt", "CC-BY.txt", "CC-BY-NC.txt"}


@pytest.fixture
def server():
    with FakeIsic(12) as fake:
        yield fake


@pytest.fixture
def elsewhere():
    """A second archive on another loopback address: where a redirect must not lead."""
    with FakeIsic(12, host="127.0.0.2") as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch):
    monkeypatch.delenv("ISIC_API_URL", raising=False)


def snapshot(root: Path, inside: Path) -> dict[str, tuple]:
    """Every path under root except those under `inside`, with what it is and its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path == inside or inside in path.parents:
            continue
        found[str(path)] = ("dir",) if path.is_dir() else ("file", path.read_bytes())
    return found


def run_cli(argv, capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def one_line_error(stderr: str, command: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(f"skinlesion {command}:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def file_path(record) -> str:
    return urlparse(record["files"]["full"]["url"]).path


def hook_some(transform, every: int = 3):
    """A record_hook that rewrites every `every`-th record (by isic_id order) with transform(record)."""
    def hook(record):
        index = int(record["isic_id"][5:]) // 7 % 1000 if isinstance(record.get("isic_id"), str) else 0
        return transform(record) if index % every == 0 else record
    return hook


# ------------------------------------------------------------------------------------------------------
# names from outside never become paths


def test_licence_names_from_the_server_never_become_paths(server, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    hostile = ["../../../escaped", str(tmp_path / "abs" / "path"), str(victim.with_suffix("")), "a/../../b",
               "dir", ".hidden", "CC-BY\n", "x" * 300]
    bad = dict(zip((r["isic_id"] for r in server.records), hostile))

    def hook(record):
        return {**record, "copyright_license": bad[record["isic_id"]]} if record["isic_id"] in bad else record

    server.record_hook = hook
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)
    with pytest.raises(IncompleteDownload, match="7 bad copyright_license") as info:  # records refused: exit 2
        download(client_options(server), out, progress=False)
    outcome = info.value.outcome
    assert snapshot(tmp_path, out) == before  # nothing written, overwritten or deleted outside `out`
    assert victim.read_text() == "mine\n"
    # "dir" is a valid slug (licenses/dir.txt, inside the folder); the others are skipped with their reason
    assert outcome.summary["skipped"] == {"bad copyright_license": len(hostile) - 1}
    assert outcome.summary["selected"] == 12 - (len(hostile) - 1)
    names = {p.name for p in (out / "licenses").iterdir()}
    assert names <= KNOWN_LICENSES | {"dir.txt"}
    assert all(p.parent == out / "licenses" for p in (out / "licenses").rglob("*"))


def test_a_folder_named_like_a_licence_file_is_never_deleted(server, tmp_path):
    out = tmp_path / "out"
    keep = out / "licenses" / "CC-BY.txt" / "keep.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("keep me\n")
    with pytest.raises(PipelineError, match="is a folder; refusing to replace it with a file"):
        download(client_options(server), out, progress=False)
    assert keep.read_text() == "keep me\n"


def test_fetch_into_a_folder_of_the_users_leaves_it_intact(tmp_path, capsys):
    params = base_params()
    params["data"]["synthetic"]["n_patients"] = 10
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"mine")
    rc, err = run_cli(["fetch", "--params", str(path), "--out", str(photos)], capsys)
    assert rc == 2
    line = one_line_error(err, "fetch")
    assert str(photos) in line and "not an earlier output" in line and "--out" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "photos"]
    assert [p.name for p in photos.iterdir()] == ["holiday.jpg"] and (photos / "holiday.jpg").read_bytes() == b"mine"
    raw = tmp_path / "raw"
    for _ in range(2):  # a rerun of the stage over its own earlier output still replaces it
        rc, err = run_cli(["fetch", "--params", str(path), "--out", str(raw)], capsys)
        assert rc == 0, err
    assert (raw / "source.json").is_file()


BAD_IDS = ["ISIC_1\x00", "ISIC_" + "1" * 300, "ISIC_1\n", "../ISIC_1", "ISIC_1.jpg", "/etc/passwd", " ISIC_1",
           "ISIC 1", 1234, None, ["ISIC_1"]]


def test_bad_ids_are_skipped_with_their_reason_not_a_crash(server, tmp_path, capsys):
    bad = dict(zip((r["isic_id"] for r in server.records), BAD_IDS))
    server.record_hook = lambda r: {**r, "isic_id": bad[r["isic_id"]]} if r["isic_id"] in bad else r
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)
    argv = ["download", "--out", str(out), "--api-url", server.api_url, "--allowed-hosts", server.files_host,
            "--retries", "1", "--backoff", "0.01"]
    code, err = run_cli(argv, capsys)
    assert code == 2  # records it was asked for were refused: not a success, however many came
    line = one_line_error(err, "download")
    assert "incomplete" in line and "10 bad isic_id, 1 missing isic_id" in line and "--allow-skipped" in line
    assert not (out / "source.json").exists()
    code, err = run_cli(argv + ["--allow-skipped"], capsys)  # accepted as it is, by choice
    assert code == 0, err
    assert snapshot(tmp_path, out) == before
    source = json.loads((out / "source.json").read_text())
    assert source["skipped"] == {"bad isic_id": len(BAD_IDS) - 1, "missing isic_id": 1}  # None: missing
    assert source["images"] == 12 - len(BAD_IDS)
    names = [p.name for p in images_in(out)]
    assert len(names) == source["images"]
    assert all(name.startswith("ISIC_") and "\n" not in name and len(name) < 70 for name in names)


def test_the_fetch_stage_counts_skipped_records_in_source_json(server, tmp_path):
    server.record_hook = hook_some(lambda r: {**r, "copyright_license": "../../../escaped",
                                              "isic_id": r["isic_id"]})
    params = base_params()
    params["data"] = {"source": "isic", "isic": client_config(server)}
    out = tmp_path / "data" / "raw"
    before = snapshot(tmp_path, tmp_path / "data")
    with pytest.raises(IncompleteDownload, match="4 bad copyright_license"):
        sources.fetch(params, out)
    assert not out.exists()  # the stage fails: no raw folder short of what was asked for
    params["data"]["isic"]["allow_skipped"] = True
    sources.fetch(params, out)
    assert snapshot(tmp_path, tmp_path / "data") == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]  # staging gone, nothing beside
    source = json.loads((out / "source.json").read_text())
    assert source["skipped"] == {"bad copyright_license": 4}
    assert source["images"] == 8
    assert {p.name for p in (out / "licenses").iterdir()} <= KNOWN_LICENSES


def test_file_urls_must_be_http_on_the_api_or_allowed_hosts(server, tmp_path):
    urls = ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "//127.0.0.1/x.jpg", "/s3/images/relative.jpg"]
    bad = dict(zip((r["isic_id"] for r in server.records), urls))

    def hook(record):
        if record["isic_id"] in bad:
            record = json.loads(json.dumps(record))
            record["files"]["full"]["url"] = bad[record["isic_id"]]
        return record

    server.record_hook = hook
    with pytest.raises(IncompleteDownload) as info:
        download(client_options(server), tmp_path / "out", progress=False)
    outcome = info.value.outcome
    assert outcome.summary["skipped"] == {
        "file URL not absolute": 2,
        "unsupported URL scheme 'file' (http/https only)": 1,
        "unsupported URL scheme 'ftp' (http/https only)": 1,
    }
    assert outcome.summary["selected"] == 8


@pytest.mark.parametrize("url", ["http://evil.example/x.jpg", "https://isic-archive.s3.amazonaws.com.evil.example/x.jpg",
                                 "https://s3.amazonaws.com/other-bucket/x.jpg",
                                 "https://s3.amazonaws.com/isic-archive/../other-bucket/x.jpg"])
def test_a_file_host_not_allowed_stops_at_once_naming_it(server, tmp_path, url):
    victim = server.records[5]

    def hook(record):
        if record["isic_id"] == victim["isic_id"]:
            record = json.loads(json.dumps(record))
            record["files"]["full"]["url"] = url
        return record

    server.record_hook = hook
    with pytest.raises(HostRefused) as info:
        download(client_options(server), tmp_path / "out", progress=False)
    message = str(info.value)
    assert "\n" not in message and urlparse(url).hostname in message and "data.isic.allowed_hosts" in message
    assert victim["isic_id"] in message


def test_only_unusable_records_is_one_line_and_exit_2(server, tmp_path, capsys):
    def hook(record):
        record = json.loads(json.dumps(record))
        record["files"]["full"]["url"] = "file:///etc/passwd"
        return record

    server.record_hook = hook
    code, err = run_cli(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    assert code == 2
    line = one_line_error(err, "download")
    assert "unsupported URL scheme 'file'" in line and "refused" in line
    assert not server.requests_to("/s3/")


def test_server_text_in_a_message_stays_one_printable_line(server, tmp_path, capsys):
    server.faults.append(Fault("/images/search/", status=400, times=None,
                               message="Bad query.\n\x1b[2J\x1b[31mskinlesion download: done, all fine\r" + "x" * 5000))
    code, err = run_cli(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    assert code == 2
    line = one_line_error(err, "download")
    assert "\x1b" not in err and "\r" not in err and "Bad query." in line and len(line) < 1000


def test_an_api_url_that_is_not_http_is_refused(tmp_path, capsys):
    code, err = run_cli(["download", "--out", str(tmp_path / "out"), "--api-url", "file:///etc"], capsys)
    assert code == 2
    assert "must be an http(s) URL" in one_line_error(err, "download")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------
# everything bounded


def test_a_body_that_never_ends_stops_at_the_stated_size_and_fails(server, tmp_path):
    victim = server.records[0]
    path = "/s3/images/" + victim["isic_id"]
    server.faults.append(Fault(path, no_length=True, extra=-1, times=None))
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download(client_options(server, retries=2), out, progress=False)
    assert time.monotonic() - started < 20
    assert victim["isic_id"] in str(info.value) and "longer than the stated size" in str(info.value)
    assert len(server.requests_to(path)) == 3  # a fault, retried, then reported failed
    on_disk = sum(p.stat().st_size for p in images_in(out))
    assert on_disk <= sum(r["files"]["full"]["size"] for r in server.records)
    assert not list((out).glob(victim["isic_id"] + "*")) and not list((out).glob(".*part"))


def test_a_body_without_a_stated_size_is_capped_by_max_body_bytes(server, tmp_path):
    victim = server.records[1]

    def hook(record):
        if record["isic_id"] == victim["isic_id"]:
            record = json.loads(json.dumps(record))
            del record["files"]["full"]["size"]
        return record

    server.record_hook = hook
    server.faults.append(Fault("/s3/images/" + victim["isic_id"], no_length=True, extra=-1, times=None))
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download(client_options(server, retries=1, max_body_bytes=2_000_000), out, progress=False)
    assert time.monotonic() - started < 20
    assert "max_body_bytes" in str(info.value)
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 2 * 2_000_000


def test_a_record_stating_a_huge_size_is_skipped(server, tmp_path):
    def hook(record):
        record = json.loads(json.dumps(record))
        if record["isic_id"] == server.records[0]["isic_id"]:
            record["files"]["full"]["size"] = 10**15
        if record["isic_id"] == server.records[1]["isic_id"]:
            record["files"]["full"]["size"] = "1000"
        return record

    server.record_hook = hook
    outcome = download(client_options(server, allow_skipped=True), tmp_path / "out", progress=False)
    assert outcome.summary["skipped"] == {"bad files.full.size": 1, "files.full.size over data.isic.max_body_bytes": 1}


def test_a_json_page_that_never_ends_is_refused_at_max_json_bytes(server, tmp_path, capsys):
    server.faults.append(Fault("/images/search/", endless_json=True, times=None))
    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(PipelineError, match="max_json_bytes") as info:
            download(client_options(server, max_json_bytes=1_000_000), tmp_path / "out", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 20
    assert peak < 20 * 1024**2, peak  # a 1 MB cap, not the whole endless answer
    assert "\n" not in str(info.value)
    assert len(server.requests_to("/images/search/")) == 1  # refused, not retried
    assert not server.requests_to("/s3/")


@pytest.mark.parametrize("limit", [None, 5])
def test_a_next_link_pointing_to_itself_stops_paging(server, tmp_path, monkeypatch, limit):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    server.next_hook = lambda following, this: this
    started = time.monotonic()
    with pytest.raises(PipelineError, match="repeats itself"):
        download(client_options(server, limit=limit), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 10
    assert len(server.requests_to("/images/search/")) == 1
    assert not server.requests_to("/s3/")


def test_a_next_link_that_does_not_advance_stops_paging(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 4)
    # a fresh cursor every time, always for the first page: never the same URL, never a new image
    server.next_hook = lambda following, this: f"{server.api_url}/images/search/?limit=4&cursor={_cursor(0)}"
    with pytest.raises(PipelineError, match="does not advance"):
        download(client_options(server), tmp_path / "out", progress=False)
    assert len(server.requests_to("/images/search/")) == 2


def test_paging_stops_after_the_pages_the_count_implies(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    server.count_hook = lambda count: 2  # one page of 2 (plus one of slack), but 6 pages follow
    with pytest.raises(PipelineError, match="past the 2 page"):
        download(client_options(server), tmp_path / "out", progress=False)
    assert len(server.requests_to("/images/search/")) == 2


@pytest.mark.parametrize("count", [None, "12", -1, True])
def test_a_first_page_without_a_whole_count_is_refused(server, tmp_path, count):
    server.count_hook = lambda real: count
    with pytest.raises(PipelineError, match="'count' is"):
        download(client_options(server), tmp_path / "out", progress=False)


def test_a_next_link_to_another_host_stops_paging(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 4)
    server.next_hook = lambda following, this: following and following.replace("127.0.0.1", "localhost")
    with pytest.raises(PipelineError, match="leaves the API"):
        download(client_options(server), tmp_path / "out", progress=False)


def test_one_new_byte_per_connection_runs_out_of_attempts(server, tmp_path):
    victim = server.records[2]
    path = "/s3/images/" + victim["isic_id"]
    server.faults.append(Fault(path, drop_after=1, times=None))  # each attempt brings exactly one new byte
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download(client_options(server, max_attempts=20), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 20
    assert "data.isic.max_attempts" in str(info.value) and victim["isic_id"] in str(info.value)
    assert len(server.requests_to(path)) == 20


def test_a_file_has_a_deadline_whatever_its_progress(server, tmp_path):
    server.rate, server.rate_step = 2_000, 500  # a steady trickle: each file would take 6 s or more
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download(client_options(server, limit=2, workers=2, file_deadline=1.0), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 1.0 + 5.0  # the deadline, plus at most one read timeout
    assert "data.isic.file_deadline" in str(info.value)


@pytest.mark.parametrize("where", ["file", "api"])
def test_an_error_answer_that_never_ends_is_read_capped(server, tmp_path, monkeypatch, where):
    monkeypatch.setattr(isic_server, "ENDLESS_LIMIT", 100 * 1024**2)  # bounds the test even for a client that reads all
    path = file_path(server.records[0]) if where == "file" else "/images/search/"
    server.faults.append(Fault(path, status=503, endless_json=True, times=None))
    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(PipelineError) as info:
            download(client_options(server, retries=1, file_deadline=5), tmp_path / "out", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 15
    assert peak < 20 * 1024**2, peak  # 64 KB of each error answer, not 100 MB
    assert "503" in str(info.value)


@pytest.mark.timeout(30)
def test_a_json_answer_trickling_in_ends_at_the_deadline(server, tmp_path):
    server.faults.append(Fault("/images/search/", trickle=0.3, times=None))  # 1 byte / 0.3 s: never a full chunk
    started = time.monotonic()
    with pytest.raises(PipelineError, match="data.isic.file_deadline"):
        download(client_options(server, file_deadline=2, retries=3), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 2 + 3  # the deadline, plus one byte's wait and some slack


@pytest.mark.timeout(20)
def test_a_retry_after_past_the_file_deadline_fails_the_file_in_time(server, tmp_path):
    victim = server.records[0]
    server.faults.append(Fault(file_path(victim), status=503, retry_after="30", times=None))
    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        download(client_options(server, file_deadline=2), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 6
    assert victim["isic_id"] in str(info.value) and "data.isic.file_deadline" in str(info.value)
    assert len(server.requests_to(file_path(victim))) == 1  # no second request after a wait past the deadline


@pytest.mark.timeout(20)
def test_a_json_request_has_a_deadline_across_its_retries(server, tmp_path):
    server.faults.append(Fault("/images/search/", status=503, retry_after="30", times=None))
    started = time.monotonic()
    with pytest.raises(PipelineError, match="data.isic.file_deadline"):
        download(client_options(server, file_deadline=2), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 6


@pytest.mark.timeout(20)
def test_paging_counts_only_usable_new_images_as_progress(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    fresh = itertools.count()
    server.count_hook = lambda count: 10**9
    server.next_hook = lambda following, this: f"{server.api_url}/images/search/?limit=2&cursor={_cursor(0)}"
    server.record_hook = lambda record: {**record, "isic_id": f"bad id {next(fresh)}"}  # new, never usable
    with pytest.raises(PipelineError, match="does not advance"):
        download(client_options(server, limit=5), tmp_path / "out", progress=False)
    assert len(server.requests_to("/images/search/")) == 1


def fresh_valid_pages(server):
    """Every page: the first records again under new valid ids, and a `next` link with a fresh cursor."""
    fresh = itertools.count()
    server.count_hook = lambda count: 10**9
    server.next_hook = lambda following, this: f"{server.api_url}/images/search/?limit=2&cursor={_cursor(0)}"
    server.record_hook = lambda record: {**record, "isic_id": f"ISIC_{next(fresh):07d}"}


@pytest.mark.timeout(20)
def test_paging_has_an_absolute_page_cap_whatever_the_count(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    monkeypatch.setattr(client_module, "MAX_PAGES", 4, raising=False)
    fresh_valid_pages(server)
    with pytest.raises(PipelineError, match="past the 4 page"):
        download(client_options(server), tmp_path / "out", progress=False)
    assert len(server.requests_to("/images/search/")) == 4


@pytest.mark.timeout(20)
def test_paging_with_a_limit_is_capped_by_that_limit(server):
    fresh_valid_pages(server)
    client = client_module.IsicClient(client_options(server))
    with pytest.raises(PipelineError, match="past the 11 page"):
        for _ in client.search_pages("", (), page_size=2, want=2):  # a consumer that never stops itself
            pass
    assert len(server.requests_to("/images/search/")) == 11  # 2 images: 1 page, times 10, plus 1 of slack


# ------------------------------------------------------------------------------------------------------
# redirects keep to the same host rules


def test_a_file_redirect_to_another_host_is_refused(server, elsewhere, tmp_path):
    victim, looping = server.records[0], server.records[1]
    server.faults.append(Fault(file_path(victim), redirect=elsewhere.origin + file_path(victim), times=None))
    server.faults.append(Fault(file_path(looping), redirect=looping["files"]["full"]["url"], times=None))
    with pytest.raises(PipelineError) as info:
        download(client_options(server), tmp_path / "out", progress=False)
    message = str(info.value)
    assert not elsewhere.log  # never asked
    assert victim["isic_id"] in message and "redirect" in message and "not allowed" in message
    assert looping["isic_id"] in message and "redirects" in message
    assert len(list(images_in(tmp_path / "out"))) == 10


def test_a_redirect_to_an_unreadable_location_fails_the_file_or_the_search(server, tmp_path):
    victim = server.records[0]
    server.faults.append(Fault(file_path(victim), redirect="http://[::1/x.jpg", times=None))
    with pytest.raises(PipelineError, match=f"{victim['isic_id']}: redirect to an unreadable Location"):
        download(client_options(server), tmp_path / "out", progress=False)
    server.faults.append(Fault("/images/search/", redirect="http://[::1/x", times=None))
    with pytest.raises(PipelineError, match="redirect to an unreadable Location"):
        download(client_options(server), tmp_path / "out2", progress=False)


def test_a_file_redirect_on_the_same_host_is_followed(server, tmp_path):
    victim = server.records[0]
    server.faults.append(Fault(file_path(victim), redirect=victim["files"]["full"]["url"], times=1))
    download(client_options(server), tmp_path / "out", progress=False)
    assert len(server.requests_to(file_path(victim))) == 2
    assert len(list(images_in(tmp_path / "out"))) == 12


def test_an_api_redirect_to_another_host_is_refused(server, elsewhere, tmp_path):
    server.faults.append(Fault("/images/search/", redirect=elsewhere.api_url + "/images/search/", times=None))
    with pytest.raises(PipelineError, match="redirect.*leaves the API"):
        download(client_options(server), tmp_path / "out", progress=False)
    assert not elsewhere.log


# ------------------------------------------------------------------------------------------------------
# messages, never tracebacks


def refuse_mkdir(monkeypatch, under: Path, code: int) -> None:
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path) == under or under in Path(path).parents:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("code, words", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")])
def test_an_unwritable_output_folder_is_one_line_for_download(server, tmp_path, monkeypatch, capsys, code, words):
    out = tmp_path / "ro" / "out"
    refuse_mkdir(monkeypatch, tmp_path / "ro", code)
    rc, err = run_cli(["download", "--out", str(out), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    assert rc == 2
    line = one_line_error(err, "download")
    assert words in line and str(tmp_path / "ro") in line and "folder" in line


def test_any_other_failure_on_a_path_is_one_line_too(server, tmp_path, monkeypatch, capsys):
    refuse_mkdir(monkeypatch, tmp_path / "odd", errno.ENOENT)  # /proc answers mkdir like this
    rc, err = run_cli(["download", "--out", str(tmp_path / "odd" / "out"), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    assert rc == 2
    assert str(tmp_path / "odd") in one_line_error(err, "download")


def test_a_full_disk_during_the_download_is_one_line_without_run_again(server, tmp_path, monkeypatch, capsys):
    real_open = open

    class Full:
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(transfer_module, "open", lambda path, mode="r", *a, **k: Full(path) if "b" in mode
                        else real_open(path, mode, *a, **k), raising=False)
    rc, err = run_cli(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--allowed-hosts", server.files_host, "--workers", "2"],
                      capsys)
    assert rc == 2
    line = one_line_error(err, "download")
    assert "no space left on device" in line and ".part" in line and "free some disk space" in line
    assert "again" not in line


@pytest.mark.parametrize("stage", ["fetch", "metadata"])
def test_an_unwritable_output_folder_is_one_line_for_every_stage(make_raw, tmp_path, monkeypatch, capsys, stage):
    from conftest import records

    params = base_params()
    params["data"]["synthetic"]["n_patients"] = 10
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    raw = make_raw(records(10))
    refuse_mkdir(monkeypatch, tmp_path / "ro", errno.EACCES)
    argv = {"fetch": ["fetch", "--params", str(path), "--out", str(tmp_path / "ro" / "raw")],
            "metadata": ["metadata", "--params", str(path), "--raw", str(raw),
                         "--out", str(tmp_path / "ro" / "metadata.parquet")]}[stage]
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    assert "permission denied" in one_line_error(err, stage)


HOLDER = textwrap.dedent("""
    import fcntl, json, os, sys, time
    fh = open(sys.argv[1], "a+")
    fcntl.flock(fh, fcntl.LOCK_EX)
    fh.write(json.dumps({"pid": os.getpid(), "host": "here", "started": "now", "command": "skinlesion download"}))
    fh.flush()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_lock_held_by_a_live_download_says_who_holds_it(server, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, err = run_cli(["download", "--out", str(out), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2
    line = one_line_error(err, "download")
    assert f"pid {holder.pid}" in line and "skinlesion download" in line and str(out) in line


def test_a_lock_left_by_a_dead_process_never_blocks(server, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": "here", "started": "then"}))
    download(client_options(server), out, progress=False)
    assert len(list(images_in(out))) == 12
    assert not (out / LOCK_NAME).exists()


def test_a_network_error_escaping_a_command_is_one_line(server, tmp_path, monkeypatch, capsys):
    from skinlesion.sources.isic import download as download_module

    def broken(*args, **kwargs):
        raise requests.exceptions.ConnectionError("the proxy hung up")  # an OSError without a file name

    monkeypatch.setattr(download_module, "download", broken)
    rc, err = run_cli(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    assert rc == 2
    line = one_line_error(err, "download")
    assert "network" in line and "the proxy hung up" in line


def test_an_os_error_without_a_path_is_one_line(server, tmp_path, monkeypatch, capsys):
    from skinlesion.sources.isic import download as download_module

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(download_module, "download", broken)
    rc, err = run_cli(["download", "--out", str(tmp_path / "out"), "--api-url", server.api_url, "--allowed-hosts", server.files_host], capsys)
    assert rc == 2
    assert "Input/output error" in one_line_error(err, "download")


def test_a_request_that_cannot_be_made_is_reported_as_such_not_as_a_write(server, tmp_path):
    victim = server.records[0]

    def hook(record):
        if record["isic_id"] == victim["isic_id"]:
            record = json.loads(json.dumps(record))
            record["files"]["full"]["url"] = "http://127.0.0.1:99999/x.jpg"  # allowed host, impossible port
        return record

    server.record_hook = hook
    with pytest.raises(PipelineError) as info:
        download(client_options(server), tmp_path / "out", progress=False)
    line = next(line for line in str(info.value).splitlines() if victim["isic_id"] in line)
    assert "could not write" not in line and "InvalidURL" in line
