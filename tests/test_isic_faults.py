"""Faults: Retry-After, 5xx bursts, cut bodies, timeouts, retry exhaustion, bad query/cursor, disk space."""

from __future__ import annotations

import collections
import socket
import sys
import time
from pathlib import Path

from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import FakeIsic, Fault, client_config, client_options, images_in  # noqa: E402

from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.sources.isic import client as client_module  # noqa: E402
from skinlesion.sources.isic import download as download_module  # noqa: E402
from skinlesion.sources.isic.download import download  # noqa: E402
from skinlesion.sources.isic.options import from_config  # noqa: E402

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server():
    with FakeIsic(12) as fake:
        yield fake


options = client_options


def assert_complete(server, out, records=None):
    records = server.records if records is None else records
    for record in records:
        path = out / (record["isic_id"] + Path(urlparse(record["files"]["full"]["url"]).path).suffix)
        assert path.read_bytes() == server.file_bytes(record), record["isic_id"]
    assert not list((out).glob(".*.part"))


def file_requests(server):
    by_path = collections.defaultdict(list)
    for entry in server.requests_to("/s3/images/"):
        by_path[entry["path"]].append(entry)
    return by_path


def test_429_and_503_honour_retry_after(server, tmp_path):
    server.faults.append(Fault("/images/search/", status=429, retry_after="1", times=1))
    target = server.key_of(server.records[2])
    server.faults.append(Fault(target, status=503, retry_after="1", times=1))
    out = tmp_path / "isic"
    started = time.monotonic()
    download(options(server, backoff=0.01, max_backoff=0.01), out, progress=False)
    searches = server.requests_to("/images/search/")
    assert [s["status"] for s in searches] == [429, 200]
    assert searches[1]["time"] - searches[0]["time"] >= 0.95  # waited as told, not the 10 ms backoff
    hits = server.requests_to(target)
    assert [h["status"] for h in hits] == [503, 200]
    assert hits[1]["time"] - hits[0]["time"] >= 0.95
    assert time.monotonic() - started >= 1.9
    assert_complete(server, out)


def test_bursts_of_5xx_are_retried_with_backoff(server, tmp_path):
    for status in (500, 502, 504):
        server.faults.append(Fault("/s3/images/", status=status, times=1))
    server.faults.append(Fault("/images/search/", status=502, times=2))
    out = tmp_path / "isic"
    download(options(server, retries=3), out, progress=False)
    assert_complete(server, out)
    for path, hits in file_requests(server).items():
        assert [h["status"] for h in hits] == [500, 502, 504, 200], path


def test_bodies_cut_short_are_resumed_with_range(server, tmp_path):
    server.faults.append(Fault("/s3/images/", drop_after=3000, times=1))
    out = tmp_path / "isic"
    outcome = download(options(server), out, progress=False)
    assert_complete(server, out)
    for path, hits in file_requests(server).items():
        assert len(hits) == 2, path
        assert hits[0]["range"] is None and hits[0]["sent"] == 3000
        assert hits[1]["range"] == "bytes=3000-" and hits[1]["status"] == 206
    assert outcome.report.resumed == 12


def test_bodies_cut_short_restart_when_the_server_ignores_range(server, tmp_path):
    server.range_support = False
    server.faults.append(Fault("/s3/images/", drop_after=3000, times=1))
    out = tmp_path / "isic"
    outcome = download(options(server), out, progress=False)
    assert_complete(server, out)
    for path, hits in file_requests(server).items():
        assert [h["status"] for h in hits] == [200, 200], path
        assert hits[1]["range"] == "bytes=3000-"  # asked, got the whole file, started over
    assert outcome.report.resumed == 0
    assert all(r.restarted for r in outcome.report.results)


def test_a_body_always_cut_without_range_gives_up(server, tmp_path):
    # no progress possible: must count as failures and stop, not loop forever
    server.range_support = False
    victim = server.records[0]
    path = "/s3/images/" + victim["isic_id"]
    server.faults.append(Fault(path, drop_after=500, times=None))
    with pytest.raises(PipelineError) as info:
        download(options(server, retries=2), tmp_path / "isic", progress=False)
    assert victim["isic_id"] in str(info.value) and "cut short" in str(info.value)
    # the first cut got 500 new bytes (progress, free); the three after it got nothing new: 1 try + 2 retries
    hits = server.requests_to(path)
    assert len(hits) == 4 and all(h["status"] == 200 for h in hits)


def test_timeouts_are_retried(server, tmp_path):
    # The read timeout applies to every request of the download, and server and client share one process
    # (one GIL): a pause longer than it (a full garbage collection with TensorFlow loaded took 0.7 s on a
    # contended core) times out an undelayed request too and adds a retry. 1 s of slack, the delay 3x that.
    victim = server.records[1]
    path = "/s3/images/" + victim["isic_id"]
    server.faults.append(Fault(path, delay=3.0, times=1))
    server.faults.append(Fault("/images/search/", delay=3.0, times=1))
    out = tmp_path / "isic"
    download(options(server, read_timeout=1.0), out, progress=False)
    assert_complete(server, out)
    assert len(server.requests_to(path)) == 2
    assert len(server.requests_to("/images/search/")) == 2


def test_retry_exhaustion_gives_one_clear_error_and_keeps_finished_files(server, tmp_path):
    victims = server.records[3:5]
    for record in victims:
        server.faults.append(Fault("/s3/images/" + record["isic_id"], status=500, times=None))
    out = tmp_path / "isic"
    with pytest.raises(PipelineError) as info:
        download(options(server, retries=2), out, progress=False)
    message = str(info.value)
    assert message.startswith("2 image(s) could not be downloaded")
    for record in victims:
        assert record["isic_id"] in message
        assert len(server.requests_to("/s3/images/" + record["isic_id"])) == 3  # 1 try + 2 retries
    assert "HTTP 500" in message and "again" in message
    others = [r for r in server.records if r not in victims]
    assert_complete(server, out, others)
    assert not any((out).glob(victims[0]["isic_id"] + ".*"))
    assert (out / "metadata.csv").exists()

    # the rerun fetches only the two that failed
    server.faults.clear()
    before = len(server.requests_to("/s3/images/"))
    download(options(server), out, progress=False)
    assert len(server.requests_to("/s3/images/")) - before == 2
    assert_complete(server, out)


def test_unreachable_server_fails_after_retries(tmp_path):
    # A port bound here but never listened on refuses connections for sure (port 9 may have a listener).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        cfg = {"api_url": f"http://127.0.0.1:{closed.getsockname()[1]}/api/v2", "retries": 1, "backoff": 0.01,
               "connect_timeout": 0.5}
        with pytest.raises(PipelineError, match="after 2 attempts.*ISIC_API_URL"):
            download(from_config(cfg, env={}), tmp_path / "x", progress=False)


def test_bad_query_fails_at_once_with_the_server_message(server, tmp_path):
    with pytest.raises(PipelineError) as info:
        download(options(server, query="diagnosis_1:(Malignant"), tmp_path / "x", progress=False)
    assert "Could not parse search query." in str(info.value) and "400" in str(info.value)
    assert len(server.requests_to("/images/search/")) == 1
    assert not server.requests_to("/s3/")


def test_bad_cursor_fails_at_once_with_the_server_message(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 5)
    server.bad_cursor_page = 1
    with pytest.raises(PipelineError) as info:
        download(options(server), tmp_path / "x", progress=False)
    assert "Invalid cursor." in str(info.value) and "422" in str(info.value)
    assert [s["status"] for s in server.requests_to("/images/search/")] == [200, 422]
    assert not server.requests_to("/s3/")


def test_short_disk_space_refuses_to_start(server, tmp_path, monkeypatch):
    import shutil

    real = shutil.disk_usage

    def tiny(path):
        usage = real(path)
        return type(usage)(usage.total, usage.used, 50 * 1024**2)  # 50 MB free: less than the margin

    monkeypatch.setattr(download_module.shutil, "disk_usage", tiny)
    out = tmp_path / "isic"
    with pytest.raises(PipelineError, match="not enough free disk space"):
        download(options(server), out, progress=False)
    assert not server.requests_to("/s3/")
    assert not images_in(out) and not list(out.glob(".*.part"))
