"""How the download overlaps its requests: files while search pages still arrive, license texts alongside,
connections kept alive, and a test server that answers without a Nagle stall. Behaviour, not timings: the
order and the connections are read from the server's request log."""

from __future__ import annotations

import sys
from pathlib import Path

from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import LICENSE_BODIES, FakeIsic, Fault, client_options, seeded_faults, images_in  # noqa: E402

from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.sources.isic import client as client_module  # noqa: E402
from skinlesion.sources.isic import download as download_module  # noqa: E402
from skinlesion.sources.isic.download import download  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server():
    with FakeIsic(30) as fake:
        yield fake


def first(entries: list[dict]) -> float:
    return min(e["time"] for e in entries)


def test_files_start_while_later_search_pages_still_arrive(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 5)  # 6 pages
    server.faults.append(Fault("/images/search/", delay=0.2, times=None))  # slow pages, fast files
    out = tmp_path / "isic"
    download(client_options(server), out, progress=False)
    searches = server.requests_to("/images/search/")
    files = server.requests_to("/s3/")
    assert len(searches) == 6 and len(files) == 30
    assert first(files) < searches[-1]["time"]  # the first files went before the last page was asked for
    # ... but not before the second page was read: a broken paging shows there and costs no transfer
    assert first(files) > searches[1]["time"]
    assert len({p.name for p in images_in(out)}) == 30


def test_license_texts_are_fetched_while_paging_goes_on(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 5)
    server.faults.append(Fault("/images/search/", delay=0.2, times=None))
    out = tmp_path / "isic"
    download(client_options(server), out, progress=False)
    licenses = server.requests_to("/zip-download/license-file/")
    assert len(licenses) == 3  # each once
    assert first(licenses) < server.requests_to("/images/search/")[-1]["time"]
    for name, body in LICENSE_BODIES.items():
        assert (out / "licenses" / f"{name}.txt").read_text(encoding="utf-8") == body


def test_connections_are_kept_alive_one_per_worker(server, tmp_path):
    download(client_options(server, workers=4), tmp_path / "isic", progress=False)
    files = server.requests_to("/s3/")
    assert len(files) == 30
    assert len({e["client"] for e in files}) <= 4  # 30 files over at most 4 connections


def test_the_test_server_sets_tcp_nodelay_on_every_connection(server, tmp_path):
    download(client_options(server), tmp_path / "isic", progress=False)
    assert server.log and all(e["nodelay"] for e in server.log)


def test_a_paging_error_after_files_started_stops_them_and_keeps_the_folder_resumable(server, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 5)
    server.bad_cursor_page = 3  # pages 1-3 arrive, files start, page 4's cursor is refused
    out = tmp_path / "isic"
    with pytest.raises(PipelineError, match="Invalid cursor"):
        download(client_options(server), out, progress=False)
    assert server.requests_to("/s3/")  # files had started
    assert not (out / ".isic-download.lock").exists()
    assert (out / ".isic-download.json").exists()  # the folder says a download is unfinished
    assert not (out / "metadata.csv").exists()  # written only once the whole selection is known
    server.bad_cursor_page = None
    download(client_options(server), out, progress=False)  # the rerun completes
    assert len(list((out).glob("ISIC_*"))) == 30


def test_the_disk_check_runs_on_each_batch(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 5)
    margin = download_module.DISK_MARGIN_BYTES
    sizes = [r["files"]["full"]["size"] for r in server.records]
    free = margin + sum(sizes[:10]) + 1  # room for the first batch (pages 1 and 2), not for page 3 too
    monkeypatch.setattr(download_module, "free_bytes", lambda folder: free)
    server.faults.append(Fault("/s3/", delay=0.5, times=None))  # no file done before page 3 is checked
    with pytest.raises(PipelineError, match="not enough free disk space"):
        download(client_options(server, workers=1), tmp_path / "isic", progress=False)
    assert len(server.requests_to("/s3/")) <= 10  # nothing of page 3 onwards was asked for


def test_seeded_faults_are_the_same_for_every_client_and_survived(tmp_path):
    with FakeIsic(30) as server:
        assert seeded_faults(server.data, 12) == seeded_faults(server.data, 12)
        server.faults.extend(seeded_faults(server.data, 12, share=0.3))
        download(client_options(server), tmp_path / "a", progress=False)
        statuses = [e["status"] for e in server.log]
        server.reset()
        assert not server.log
        download(client_options(server), tmp_path / "b", progress=False)
        assert sorted(e["status"] for e in server.log) == sorted(statuses)  # the same faults met again
        assert {429, 503} <= set(statuses)
        for record in server.records:
            name = record["isic_id"] + Path(urlparse(record["files"]["full"]["url"]).path).suffix
            for out in ("a", "b"):
                assert (tmp_path / out / name).read_bytes() == server.file_bytes(record)
