"""Resuming: kill -9 of the real CLI mid-download, partial files with and without Range, stale files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import FakeIsic, client_config, client_options, images_in  # noqa: E402

from skinlesion.sources.isic.download import download  # noqa: E402

pytestmark = pytest.mark.timeout(45)


options = client_options


def name_of(record):
    return record["isic_id"] + Path(urlparse(record["files"]["full"]["url"]).path).suffix


def final_files(out):
    return {p.name: p for p in images_in(out)}


def part_files(out):
    return {p.name: p for p in out.glob(".*.part")} if out.is_dir() else {}


def test_kill_9_mid_download_then_rerun_resumes_with_range(tmp_path):
    with FakeIsic(16, seed=11, scale=1.6) as server:
        server.rate = 150_000  # bytes/s per body: slow enough to kill the client mid-file
        records = server.records
        sizes = {name_of(r): r["files"]["full"]["size"] for r in records}
        out = tmp_path / "isic"
        cmd = [sys.executable, "-m", "skinlesion.cli", "download", "--out", str(out), "--allowed-hosts", server.files_host,
               "--workers", "3", "--backoff", "0.01", "--retries", "3"]
        env = {**os.environ, "ISIC_API_URL": server.api_url}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                finals, parts = final_files(out), part_files(out)
                # never a truncated file under a final name, at any moment
                for name, path in finals.items():
                    assert path.stat().st_size == sizes[name], name
                if len(finals) >= 2 and any(p.stat().st_size > 0 for p in parts.values()):
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.02)
            else:
                pytest.fail("the download never reached a state with finished and partial files")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL

        finals, parts = final_files(out), part_files(out)
        assert 2 <= len(finals) < len(records)
        for name, path in finals.items():
            assert path.stat().st_size == sizes[name], name
        have = {p.name[1:-len(".part")]: p.stat().st_size for p in parts.values()}
        partial = {name: size for name, size in have.items() if 0 < size < sizes[name]}
        assert partial
        # A worker killed between its last byte (fsync) and the rename leaves a complete .part: the rerun
        # renames it without a request, so it counts as finished here.
        done_before = set(finals) | {name for name, size in have.items() if size == sizes[name]}

        # rerun at full speed; first let the server take in requests the killed client had already sent
        server.rate = None
        time.sleep(0.5)
        mark = len(server.log)
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        assert rerun.returncode == 0, rerun.stderr
        assert "already present" in rerun.stdout and "resumed from partial files" in rerun.stdout

        finals = final_files(out)
        assert sorted(finals) == sorted(sizes)  # complete, no duplicates, nothing else
        assert not part_files(out)
        for record in records:
            assert finals[name_of(record)].read_bytes() == server.file_bytes(record)

        after = [e for e in server.log[mark:] if e["path"].startswith("/s3/images/")]
        fetched = [e["path"].rsplit("/", 1)[1] for e in after]
        assert len(fetched) == len(set(fetched))  # each missing file requested once
        assert not done_before & set(fetched)  # finished files were not fetched again
        assert set(fetched) == set(sizes) - done_before
        ranged = {e["path"].rsplit("/", 1)[1]: e for e in after if e["range"]}
        assert set(ranged) == set(partial)  # the Range path was taken for every partial file
        for name, entry in ranged.items():
            assert entry["range"] == f"bytes={partial[name]}-" and entry["status"] == 206
            assert entry["sent"] == sizes[name] - partial[name]

        source = (out / "source.json").read_text()
        assert server.api_url in source and '"thumbnails": false' in source


@pytest.fixture
def server():
    with FakeIsic(8, seed=3) as fake:
        yield fake


def seed_part(server, out, record, nbytes, garbage=False):
    images = out  # isic-cli's flat layout: the images (and their .part files) at the top
    images.mkdir(parents=True, exist_ok=True)
    data = server.file_bytes(record)
    prefix = b"\0" * nbytes if garbage else data[:nbytes]
    (images / f".{name_of(record)}.part").write_bytes(prefix)


@pytest.mark.parametrize("range_support", [True, False])
def test_a_partial_file_is_continued_or_restarted(server, tmp_path, range_support):
    server.range_support = range_support
    out = tmp_path / "isic"
    victim = server.records[2]
    seed_part(server, out, victim, 1234)
    outcome = download(options(server), out, progress=False)
    hits = server.requests_to("/s3/images/" + victim["isic_id"])
    assert len(hits) == 1 and hits[0]["range"] == "bytes=1234-"
    assert hits[0]["status"] == (206 if range_support else 200)
    assert (out / name_of(victim)).read_bytes() == server.file_bytes(victim)
    assert outcome.report.resumed == (1 if range_support else 0)
    assert not part_files(out)


def test_a_part_larger_than_the_file_is_discarded(server, tmp_path):
    out = tmp_path / "isic"
    victim = server.records[0]
    seed_part(server, out, victim, victim["files"]["full"]["size"] + 10, garbage=True)
    download(options(server), out, progress=False)
    hits = server.requests_to("/s3/images/" + victim["isic_id"])
    assert len(hits) == 1 and hits[0]["range"] is None
    assert (out / name_of(victim)).read_bytes() == server.file_bytes(victim)


def test_a_complete_part_is_renamed_without_a_request(server, tmp_path):
    out = tmp_path / "isic"
    victim = server.records[1]
    seed_part(server, out, victim, victim["files"]["full"]["size"])
    download(options(server), out, progress=False)
    assert not server.requests_to("/s3/images/" + victim["isic_id"])
    assert (out / name_of(victim)).read_bytes() == server.file_bytes(victim)


def test_a_truncated_file_under_its_final_name_is_fetched_again(server, tmp_path):
    out = tmp_path / "isic"
    download(options(server), out, progress=False)
    victim = server.records[4]
    path = out / name_of(victim)
    path.write_bytes(path.read_bytes()[:100])  # e.g. left by another tool
    mark = len(server.log)
    outcome = download(options(server), out, progress=False)
    again = [e for e in server.log[mark:] if e["path"].startswith("/s3/")]
    assert [e["path"] for e in again] == ["/s3/images/" + name_of(victim)]
    assert path.read_bytes() == server.file_bytes(victim)
    assert outcome.report.count("present") == 7 and outcome.report.count("done") == 1


def test_a_complete_folder_is_not_fetched_again(server, tmp_path):
    out = tmp_path / "isic"
    download(options(server), out, progress=False)
    before = {p: p.stat().st_mtime_ns for p in images_in(out)}
    mark = len(server.log)
    outcome = download(options(server), out, progress=False)
    assert not [e for e in server.log[mark:] if e["path"].startswith("/s3/")]
    assert {p: p.stat().st_mtime_ns for p in images_in(out)} == before
    assert outcome.report.count("present") == 8


def test_a_folder_in_the_old_images_layout_is_moved_flat_and_continued(server, tmp_path):
    out = tmp_path / "isic"
    download(options(server), out, progress=False)
    (out / "source.json").write_text('{"source": "isic", "files": "full"}')  # as `skinlesion download` leaves it
    # the layout of skinlesion download before isic-cli's flat one: images (and a .part) under images/
    old = out / "images"
    old.mkdir()
    finished = images_in(out)
    for path in finished:
        path.rename(old / path.name)
    victim = server.records[0]
    (old / name_of(victim)).unlink()
    seed_part(server, tmp_path / "scratch", victim, 100)
    (tmp_path / "scratch" / f".{name_of(victim)}.part").rename(old / f".{name_of(victim)}.part")
    (old / "notes.txt").write_text("a user's file: left where it is")
    mark = len(server.log)
    outcome = download(options(server), out, progress=False)
    assert [e["path"] for e in server.log[mark:] if e["path"].startswith("/s3/")] == [server.key_of(victim)]
    assert outcome.report.count("present") == len(finished) - 1 and outcome.report.resumed == 1
    assert [p.name for p in images_in(out)] == [p.name for p in finished]
    for record in server.records:
        assert (out / name_of(record)).read_bytes() == server.file_bytes(record)
    assert sorted(p.name for p in old.iterdir()) == ["notes.txt"]


def test_an_images_folder_is_left_alone_where_no_download_was(server, tmp_path):
    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    (out / "images" / "ISIC_0000001.jpg").write_bytes(b"a user's own picture")
    download(options(server), out, progress=False)
    assert (out / "images" / "ISIC_0000001.jpg").read_bytes() == b"a user's own picture"
    assert len(images_in(out)) == len(server.records)


def test_ctrl_c_stops_cleanly_and_the_rerun_completes(tmp_path):
    with FakeIsic(10, seed=5, scale=1.6) as server:
        server.rate = 150_000
        sizes = {name_of(r): r["files"]["full"]["size"] for r in server.records}
        out = tmp_path / "isic"
        cmd = [sys.executable, "-m", "skinlesion.cli", "download", "--out", str(out), "--allowed-hosts", server.files_host, "--workers", "3"]
        env = {**os.environ, "ISIC_API_URL": server.api_url}
        # A job started in the background by a non-interactive shell (nohup ... &, some CI runners) inherits
        # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give the child the default.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(p.stat().st_size for p in part_files(out).values()):
                assert proc.poll() is None
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert part_files(out)  # partial bytes kept, hidden
        for name, path in final_files(out).items():
            assert path.stat().st_size == sizes[name]
        assert not (out / ".isic-download.lock").exists()

        server.rate = None
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        assert rerun.returncode == 0, rerun.stderr
        assert sorted(final_files(out)) == sorted(sizes) and not part_files(out)
