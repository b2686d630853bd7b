"""Atomic file output: a stage either leaves a complete file (or folder) or nothing at all."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import STORAGE_ERRNOS, PipelineError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, within: str | os.PathLike | None = None,
                mark: str | tuple[str, ...] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `target` only if the block succeeds.

    Works for files and folders alike: whatever the block creates at the yielded path replaces
    `target` as a whole. On error the temporary is removed and `target` is left untouched.

    With `within` (the output folder a name from outside is written into), a target that is not
    strictly inside that folder, once `..` and links are resolved, is refused before anything is
    created. A file never replaces a folder nor a folder a file, and a folder output names its `mark`:
    the file every output of its kind holds (source.json for data/raw, ...). An existing folder is
    replaced only when it is empty or holds that mark (an earlier output of the same stage), so
    `--out ~/photos` never deletes a user's folder; this is checked before the block runs too.
    """
    target = Path(target)
    if within is not None:
        check_inside(target, within)
    check_replaceable(target, mark)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    work = tmp / target.name
    try:
        yield work
        if target.is_symlink():
            target.unlink()  # the link itself, never what it points at
        elif target.is_dir():
            if not work.is_dir() or work.is_symlink():
                raise PipelineError(f"{target} is a folder; refusing to replace it with a file. Move it away.")
            check_replaceable(target, mark)  # it may have changed while the block ran
            shutil.rmtree(target)
        elif target.exists() and work.is_dir():
            raise PipelineError(f"{target} is a file; refusing to replace it with a folder. Move it away.")
        os.replace(work, target)
    except OSError as exc:
        name_the_output(exc, work, target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def name_the_output(exc: OSError, work: Path, target: Path) -> None:
    """Make a storage error (disk full, quota, read-only, permission) met while writing `target` name it: a
    write to an open file (file.write, numpy, pandas, pyarrow, zipfile, Keras) raises one without a
    filename, and a path inside the temporary `work` means nothing to a user: both become the output's path
    (the file inside it, when known). Other errors (a network error is an OSError too) are left as they are."""
    if exc.errno not in STORAGE_ERRNOS:
        return
    if exc.filename is None:
        exc.filename = os.fspath(target)
        return
    name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
    if name is not None and Path(name).is_relative_to(work):
        exc.filename = os.fspath(target / Path(name).relative_to(work))


# What the runners leave beside the outputs they remove: DVC's .gitignore for the outputs it tracks in a
# folder, Snakemake's --touch marker.
RUNNER_FILES = {".gitignore", ".snakemake_timestamp"}


def check_replaceable(target: Path, mark: str | tuple[str, ...] | None) -> None:
    """PipelineError unless a folder at `target` (not a link to one) is empty, holds `mark` (the first name
    when several are given), or holds nothing but the names given: a runner may have removed some of an
    earlier output's files (DVC removes the ones it declares, one by one) and left the rest."""
    if target.is_symlink() or not target.is_dir():
        return
    if mark is None:  # only file outputs go without a mark
        raise PipelineError(f"{target} is a folder; refusing to replace it with a file. Move it away.")
    marks = (mark,) if isinstance(mark, str) else tuple(mark)
    entries = {p.name for p in target.iterdir()} - RUNNER_FILES
    if (target / marks[0]).is_file() or entries <= set(marks):
        return
    raise PipelineError(f"{target} is a folder that is not an earlier output of this command (it has no "
                        f"{marks[0]}); refusing to replace it. Remove it yourself or choose another output (--out).")


def check_inside(target: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """`target` resolved, if it lies strictly inside `folder` (resolved); PipelineError otherwise."""
    target, folder = Path(target), Path(folder)
    root = folder.resolve()
    if target.name in ("", ".", ".."):
        raise PipelineError(f"refusing to write {str(target)!r}: not a file name inside {folder}")
    resolved = target.parent.resolve() / target.name
    if resolved == root or not resolved.is_relative_to(root):
        raise PipelineError(f"refusing to write {str(target)!r}: it is outside the output folder {folder}")
    return resolved


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writers of `target` left (kill -9 skips `finally`).

    A temporary is `.<name>.<pid>.<random>.tmp` beside the target; it is stale when its pid is no
    longer alive. Earlier versions wrote `.<name>.<random>.tmp` with no pid: those are stale too.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp$")
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _alive(match.group(1), entry.stat().st_mtime):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: str | None, made: float | None = None) -> bool:
    """Whether the writer `pid` of a temporary made at `made` (epoch seconds) still runs. A zombie does not,
    and neither does a process that started after the temporary was made: the pid was reused (pids wrap
    at 32768 on a busy machine)."""
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    started = _start_time(int(pid))
    if started is None:
        return True
    state, start = started
    return state != "Z" and (made is None or start <= made + 1)


def _start_time(pid: int) -> tuple[str, float] | None:
    """(state, start time in epoch seconds) of a process, from Linux's /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def write_text(path: str | os.PathLike, text: str, within: str | os.PathLike | None = None) -> None:
    with atomic_path(path, within) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal content gives equal bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _jsonable(obj: Any) -> Any:
    # NumPy scalars and arrays, Paths: the usual things that reach json.dumps from a stage.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def make_keras_archive_reproducible(path: str | os.PathLike) -> None:
    """Rewrite a .keras file so equal models give equal bytes.

    Keras stamps the save time into metadata.json and the zip entries, and numbers shared objects in
    config.json by their memory address (`shared_object_id`); all three are pinned here: the times
    fixed, the ids renumbered in order of appearance. The weights already depend only on the model.
    """
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in sorted(entries):
            if name == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif name == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, data)


def _renumber_shared_objects(config: Any) -> Any:
    ids: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (ids.setdefault(v, len(ids)) if k == "shared_object_id" else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)
