"""Atomic file output: a stage either leaves a complete file (or folder) or nothing at all. And reading a
folder someone handed us without following its links (open_regular, link_below), in bounded blocks (copy_stream)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
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
        swapped = False
        if target.is_symlink():
            target.unlink()  # the link itself, never what it points at
        elif target.is_dir():
            if not work.is_dir() or work.is_symlink():
                raise PipelineError(f"{target} is a folder; refusing to replace it with a file. Move it away.")
            check_replaceable(target, mark)  # it may have changed while the block ran
            # Swapped, the old folder is at `work` and goes with tmp below; else a reader may find none.
            swapped = exchange(work, target)
            if not swapped:
                shutil.rmtree(target)
        elif target.exists() and work.is_dir():
            raise PipelineError(f"{target} is a file; refusing to replace it with a folder. Move it away.")
        if not swapped:
            os.replace(work, target)
    except OSError as exc:
        name_the_output(exc, work, target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE), so that a folder output is replaced
    with no moment at which it is missing: a reader (the other runner, a job) sees the old folder or the
    new one. False where the system cannot (another OS, an old kernel or C library, a file system without
    it): the caller then removes and renames."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fsdecode(b))


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


# Where Snakemake keeps a directory output's mtime: a file it writes into every folder output it makes.
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"
# What the runners leave beside the outputs they remove: DVC's .gitignore for the outputs it tracks in a
# folder, Snakemake's marker.
RUNNER_FILES = {".gitignore", SNAKEMAKE_TIMESTAMP}


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


# Reading a folder someone handed us (a local dataset, a raw folder to unpack): its files are read, never its
# links followed. A symbolic link below the folder can point anywhere on the machine (/etc/passwd, ~/.ssh), and
# what is read from it would land in an output that `dvc push` sends to a remote.
COPY_BLOCK = 1 << 20  # bytes per read and write when a file is streamed (copy_stream)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO named like an image must not block the open


class NotFollowed(PipelineError):
    """A path below a folder we read that is a symbolic link (or leaves the folder, or is not a regular file)."""


def link_below(folder: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """The first component of `path` below `folder` that is a symbolic link (`path` itself included), else None.
    `folder` itself may be a link: it is the folder the user gave. A `path` not below `folder` is its own answer."""
    folder, path = Path(folder), Path(path)
    try:
        parts = path.relative_to(folder).parts
    except ValueError:
        return path
    current = folder
    for part in parts:
        if part in ("", ".", ".."):
            return path
        current = current / part
        try:
            if os.path.islink(current):
                return current
        except OSError:
            return None
    return None


def describe_link(path: Path) -> str:
    """'x is a symbolic link (to y)', for messages."""
    try:
        return f"{path} is a symbolic link (to {os.readlink(path)})"
    except OSError:
        return f"{path} is a symbolic link"


def open_regular(path: str | os.PathLike, within: str | os.PathLike, fix: str) -> int:
    """A read-only descriptor of the regular file `path`, reached from the folder `within` without following
    any symbolic link: each folder below `within` is opened relative to the last (O_NOFOLLOW, O_DIRECTORY),
    then the file itself (O_NOFOLLOW), and the descriptor is checked to be a regular file (fstat: the file
    opened is the file checked, whatever changes on disk meanwhile). NotFollowed naming the path and `fix`
    for a link, a path leaving `within` or anything but a regular file; other OSErrors (a missing file,
    permission denied) are raised as they are. The caller closes the descriptor."""
    path, within = Path(path), Path(within)
    try:
        parts = path.relative_to(within).parts
    except ValueError:
        parts = ()
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise NotFollowed(f"{path} is not a file inside {within}: {fix}.")
    fd = os.open(within, os.O_RDONLY | _DIRECTORY)
    try:
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            flags = os.O_RDONLY | _NOFOLLOW | (_NONBLOCK if last else _DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                here = within.joinpath(*parts[:k + 1])
                if os.path.islink(here):
                    raise NotFollowed(f"{describe_link(here)}: {fix}.") from None
                raise OSError(exc.errno, exc.strerror, str(here)) from None  # named in full, not by its last part
            os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFollowed(f"{path} is not a regular file: {fix}.")
        os.set_blocking(fd, True)
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def copy_stream(src, dst, size: int, digest=None, block: int = COPY_BLOCK) -> int:
    """Copy exactly `size` bytes (fewer only where `src` ends) from the file object `src` to `dst` in blocks of
    at most `block` bytes, updating `digest` (a hashlib object) as it goes; never holds more than one block.
    Returns the number of bytes copied."""
    done = 0
    while done < size:
        chunk = src.read(min(block, size - done))
        if not chunk:
            break
        if digest is not None:
            digest.update(chunk)
        dst.write(chunk)
        done += len(chunk)
    return done
