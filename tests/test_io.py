import os
import zipfile

import pytest

from skinlesion import io


def test_atomic_path_replaces_whole_or_leaves_old(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target, mark="old.txt") as tmp:  # an earlier output: it holds the mark
            tmp.mkdir()
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("stage failed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with io.atomic_path(target, mark="old.txt") as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_write_json_is_byte_stable(tmp_path):
    io.write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, None]})
    io.write_json(tmp_path / "b.json", {"a": [1.5, None], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_keras_archive_made_reproducible(tmp_path):
    def archive(path, stamp):
        address = 1000 + stamp[1]  # stands for id(obj): differs from process to process
        config = f'{{"layers": [{{"dtype": {{"shared_object_id": {address}}}}}, {{"shared_object_id": {address}}}]}}'
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(zipfile.ZipInfo("config.json", date_time=stamp), config)
            z.writestr(zipfile.ZipInfo("metadata.json", date_time=stamp),
                       f'{{"keras_version": "3", "date_saved": "{stamp}"}}')
            z.writestr(zipfile.ZipInfo("model.weights.h5", date_time=stamp), b"weights")
        io.make_keras_archive_reproducible(path)
        return path.read_bytes()

    a = archive(tmp_path / "a.keras", (2026, 1, 1, 10, 0, 0))
    b = archive(tmp_path / "b.keras", (2026, 2, 3, 11, 5, 6))
    assert a == b
    with zipfile.ZipFile(tmp_path / "a.keras") as z:
        assert z.read("model.weights.h5") == b"weights"
        assert "date_saved" not in z.read("metadata.json").decode()
        assert z.read("config.json") == b'{"layers": [{"dtype": {"shared_object_id": 0}}, {"shared_object_id": 0}]}'
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    """kill -9 skips `finally`: the next writer of the same target removes what the dead one left,
    and leaves a live writer's temporary and unrelated dot-folders alone."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [tmp_path / f".out.{dead_pid}.abcd1234.tmp", tmp_path / ".out.k2j4h5g6.tmp"]
    live = tmp_path / f".out.{os.getpid()}.zzzz9999.tmp"
    other = tmp_path / f".other.{dead_pid}.abcd1234.tmp"
    for folder in (*stale, live, other):
        (folder / "out").mkdir(parents=True)
    with io.atomic_path(tmp_path / "out") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "out").read_text() == "new"
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()


@pytest.mark.parametrize("name", ["../escaped.txt", "../../x/y.txt", "/abs/path.txt", "a/../../b.txt", "..", "."])
def test_atomic_path_refuses_a_target_outside_its_folder(tmp_path, name):
    from skinlesion.errors import PipelineError

    folder = tmp_path / "out" / "licenses"
    folder.mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(PipelineError, match="refusing to write"):
        with io.atomic_path(folder / name, within=folder) as tmp:
            tmp.write_text("server-chosen text")
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_atomic_path_refuses_an_escape_through_a_link(tmp_path):
    from skinlesion.errors import PipelineError

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path)
    with pytest.raises(PipelineError, match="outside the output folder"):
        io.write_text(folder / "link" / "escaped.txt", "x", within=folder)
    assert not (tmp_path / "escaped.txt").exists()
    io.write_text(folder / "inside.txt", "ok\n", within=folder)
    assert (folder / "inside.txt").read_text() == "ok\n"


def test_atomic_path_never_deletes_what_it_did_not_create(tmp_path):
    from skinlesion.errors import PipelineError

    folder = tmp_path / "dir.txt"
    (folder / "precious").mkdir(parents=True)
    with pytest.raises(PipelineError, match="is a folder; refusing"):
        io.write_text(folder, "replaces a folder?")
    assert (folder / "precious").is_dir()
    file = tmp_path / "file"
    file.write_text("mine")
    with pytest.raises(PipelineError, match="is a file; refusing"):
        with io.atomic_path(file) as tmp:
            tmp.mkdir()
    assert file.read_text() == "mine"
    outside = tmp_path / "target.txt"
    outside.write_text("pointed at")
    link = tmp_path / "link.txt"
    link.symlink_to(outside)
    io.write_text(link, "new")  # replaces the link itself, never what it points at
    assert outside.read_text() == "pointed at" and link.read_text() == "new" and not link.is_symlink()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_folder_output_replaces_only_an_earlier_output_or_an_empty_folder(tmp_path):
    from skinlesion.errors import PipelineError

    photos = tmp_path / "photos"  # `skinlesion fetch --out ~/photos`
    (photos / "holiday.jpg").parent.mkdir()
    (photos / "holiday.jpg").write_bytes(b"mine")
    ran = []
    with pytest.raises(PipelineError, match=r"photos is a folder that is not an earlier output .*source.json.*--out"):
        with io.atomic_path(photos, mark="source.json") as tmp:
            ran.append(tmp)  # refused before the block: no fetch is wasted
    assert not ran and sorted(os.listdir(photos)) == ["holiday.jpg"] and (photos / "holiday.jpg").read_bytes() == b"mine"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    raw = tmp_path / "raw"
    for run in ("first", "second"):  # the next run of the stage replaces the earlier output
        with io.atomic_path(raw, mark="source.json") as tmp:
            tmp.mkdir()
            (tmp / "source.json").write_text(run)
    assert sorted(os.listdir(raw)) == ["source.json"] and (raw / "source.json").read_text() == "second"

    empty = tmp_path / "empty"
    empty.mkdir()
    with io.atomic_path(empty, mark="source.json") as tmp:
        tmp.mkdir()
        (tmp / "source.json").write_text("new")
    assert (empty / "source.json").read_text() == "new"


def test_a_folder_dvc_has_partly_emptied_is_still_an_earlier_output(tmp_path):
    """DVC removes the outputs it declares one by one before rerunning a stage: evaluate's folder can be left
    with its plots/ alone. Holding nothing but what the stage writes, it is replaced; a user's file is not."""
    from skinlesion.errors import PipelineError

    marks = ("evaluation.json", "metrics.json", "plots", "figures", "predictions.csv")
    folder = tmp_path / "results" / "v"
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "roc.csv").write_text("old")
    (folder / ".gitignore").write_text("/figures\n")  # DVC's, for the outputs it tracks there
    with io.atomic_path(folder, mark=marks) as tmp:
        (tmp / "plots").mkdir(parents=True)
        (tmp / "evaluation.json").write_text("{}")
    assert sorted(os.listdir(folder)) == ["evaluation.json", "plots"]
    (folder / "evaluation.json").unlink()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="not an earlier output"):
        with io.atomic_path(folder, mark=marks) as tmp:
            tmp.mkdir()
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times come from Linux's /proc")
def test_a_temporary_whose_pid_was_reused_is_stale(tmp_path):
    """kill -9 leaves .<name>.<pid>.<random>.tmp; when that pid later belongs to a process started after the
    temporary was written (pids wrap at 32768 on a busy machine), the writer is dead and the temporary goes.
    A temporary of a writer that is running (this test) stays."""
    import subprocess
    import sys
    import time

    target = tmp_path / "out"
    mine = tmp_path / f".out.{os.getpid()}.abcdefgh.tmp"
    mine.mkdir()
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        reused = tmp_path / f".out.{later.pid}.qrstuvwx.tmp"  # its pid, but written before it started
        reused.mkdir()
        past = time.time() - 3600
        os.utime(reused, (past, past))
        removed = io.remove_stale_temporaries(target)
    finally:
        later.kill()
        later.wait()
    assert reused in removed and not reused.exists()
    assert mine.exists() and mine not in removed


def test_a_folder_output_is_never_missing_while_it_is_replaced(tmp_path, monkeypatch):
    """Issue 21: a reader (the other runner) found data/processed/shards missing between the removal of the
    old folder and the rename of the new one. Every removal atomic_path makes must leave the target there."""
    probe = tmp_path / "a", tmp_path / "b"
    for folder in probe:
        folder.mkdir()
    if not io.exchange(*probe):
        pytest.skip("this system cannot swap two paths atomically (renameat2 RENAME_EXCHANGE)")
    target = tmp_path / "shards"
    target.mkdir()
    (target / "index.parquet").write_text("old")
    seen = []
    real_rmtree = io.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        real_rmtree(path, *args, **kwargs)
        seen.append(target.is_dir())

    monkeypatch.setattr(io.shutil, "rmtree", rmtree)
    with io.atomic_path(target, mark="index.parquet") as tmp:
        tmp.mkdir()
        (tmp / "index.parquet").write_text("new")
    assert (target / "index.parquet").read_text() == "new"
    assert seen and all(seen), "the folder was missing after a removal"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "shards"]  # the old folder went with tmp


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a"), (b / "x").write_text("b")
    if not io.exchange(a, b):
        pytest.skip("no atomic swap on this system")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_inside_an_output_names_the_output(tmp_path):
    """A write to an open file (here NumPy's, to /dev/full) fails with ENOSPC and no filename: atomic_path
    names the output it was making; a path inside its temporary becomes the same path inside the output."""
    import errno

    import numpy as np

    from skinlesion.errors import storage_error

    target = tmp_path / "shards"
    with pytest.raises(OSError) as err:
        with io.atomic_path(target, mark="index.parquet") as tmp:
            tmp.mkdir()
            with open("/dev/full", "wb") as fh:
                np.save(fh, np.zeros(100_000))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert str(storage_error(err.value)).startswith(f"no space left on device at {target}: ")
    with pytest.raises(OSError) as err:
        with io.atomic_path(target, mark="index.parquet") as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "shard-00001.npy"))
    assert err.value.filename == str(target / "shard-00001.npy")
    with pytest.raises(ConnectionError) as err:  # not a storage error (requests' are OSErrors): left as it is
        with io.atomic_path(target, mark="index.parquet"):
            raise ConnectionError("reset by peer")
    assert err.value.filename is None and not target.exists()
