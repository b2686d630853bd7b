"""The one exception type a user sees: a clear message saying what is wrong and how to fix it."""

from __future__ import annotations

import errno
import os


class PipelineError(Exception):
    """A problem with the user's input or environment (bad params, unreadable data, missing weights).

    The CLI prints only the message, without a traceback, and exits with status 2.
    """


class StorageError(PipelineError):
    """The output cannot be written (permission denied, read-only file system, disk full): retrying or
    running the same command again cannot help, so whatever meets it stops at once."""


# errno -> (what happened, how to fix it)
STORAGE_ERRNOS = {
    errno.EACCES: ("permission denied", "give this user access to it (write access for an output) or choose another folder"),
    errno.EPERM: ("operation not permitted", "give this user access to it (write access for an output) or choose another folder"),
    errno.EROFS: ("read-only file system", "choose an output folder on a writable file system"),
    errno.ENOSPC: ("no space left on device", "free some disk space or choose an output folder on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space within your quota or choose another output folder"),
}


def storage_error(exc: OSError, doing: str = "at") -> StorageError | None:
    """A one-line StorageError for an OSError that no retry can fix, naming the path and the fix; else None."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    what, fix = STORAGE_ERRNOS[exc.errno]
    path = exc.filename if exc.filename is not None else "(unknown path)"
    path = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return StorageError(f"{what} {doing} {path}: {fix}.")
