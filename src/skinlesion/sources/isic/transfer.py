"""Parallel, resumable, all-or-nothing file downloads.

Each file is streamed into a hidden sibling `.<name>.part` and renamed onto its final name only when
complete (its size equals the size the archive states). A `.part` left by an interrupted run is continued
with an HTTP Range request when the server answers 206, and restarted when it answers 200. So whatever
stops a run (Ctrl-C, kill -9, network loss), the next run fetches only what is missing or incomplete and
no truncated file ever carries a final name.

The server is not trusted: a body is never written past the size the record states (more is a fault: the
.part is dropped, the file retried, then reported failed), a file without a stated size is capped at
max_body_bytes, an error answer is read only up to ERROR_BODY_BYTES, a redirect is followed only to a URL the
records could name (`redirect_problem`), and each file has max_attempts requests and file_deadline seconds
in all (waits included), however much each attempt brought. A 403 on a signed URL (it has expired) asks
`refresh` for a fresh one, from the image's record, at most max_refreshes times per file. A write that fails for lack of permission or space stops the whole download at once
(errors.StorageError): no retry and no rerun can fix it.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests
from tqdm.auto import tqdm

from ...errors import PipelineError, storage_error
from .client import ERROR_BODY_BYTES, RedirectRefused, get_following, new_session, read_capped
from .hosts import is_signed
from .selection import HostRefused
from .retry import (NETWORK_ERRORS, RETRY_STATUSES, CertificateRefused, RetryPolicy, body_pieces, certificate_refused,
                    printable, server_message, sleep)

log = logging.getLogger(__name__)
_STOPPING = (HostRefused, CertificateRefused)  # raised by `refresh`: the whole download stops, not just this file

CHUNK = 256 * 1024
CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Job:
    isic_id: str
    url: str
    size: int | None  # bytes the archive states; None = trust Content-Length
    dest: Path

    @property
    def part(self) -> Path:
        return self.dest.with_name(part_name(self.dest.name))


def part_name(name: str) -> str:
    """The hidden file an image is written to until it is complete: `.NAME.part`."""
    return f".{name}.part"


def finished_name(name: str) -> str:
    """The image a `.NAME.part` file becomes (NAME); any other name as it is."""
    return name[1:-len(".part")] if name.startswith(".") and name.endswith(".part") and len(name) > 6 else name


@dataclass
class Result:
    job: Job
    status: str  # "done" | "present" | "failed"
    bytes: int = 0  # bytes received over the network
    resumed: bool = False  # continued a .part with a 206 answer
    restarted: bool = False  # had a .part but the server sent the whole file (200)
    attempts: int = 0
    error: str = ""


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def received(self) -> int:
        return sum(r.bytes for r in self.results)

    @property
    def resumed(self) -> int:
        return sum(1 for r in self.results if r.resumed)


def is_complete(job: Job) -> bool:
    try:
        size = job.dest.stat().st_size
    except FileNotFoundError:
        return False
    return size == job.size if job.size is not None else size > 0


def bytes_present(job: Job) -> int:
    """Bytes of this file already on disk (complete file or usable .part)."""
    if is_complete(job):
        return job.size or job.dest.stat().st_size
    try:
        have = job.part.stat().st_size
    except FileNotFoundError:
        return 0
    return have if job.size is None or have <= job.size else 0


class _Progress:
    """One tqdm bar over bytes (rate, ETA) whose label counts images; thread-safe."""

    def __init__(self, n_images: int, total_bytes: int, initial: int, done: int, enabled: bool | None):
        self.n_images = n_images
        self.done = done
        self.lock = threading.Lock()
        self.bar = tqdm(
            total=total_bytes or None,
            initial=initial,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=self._label(),
            disable=None if enabled is None else not enabled,
            smoothing=0.1,
            dynamic_ncols=True,
        )

    def grow(self, n_images: int, total_bytes: int, initial: int, done: int) -> None:
        """More images to fetch (the next search page's), `initial` of their bytes and `done` of them on disk."""
        with self.lock:
            self.n_images += n_images
            self.done += done
            self.bar.total = (self.bar.total or 0) + total_bytes or None
            self.bar.update(initial)
            self.bar.set_description_str(self._label(), refresh=False)

    def _label(self) -> str:
        return f"images {self.done}/{self.n_images}"

    def add(self, n: int) -> None:
        with self.lock:
            self.bar.update(n)

    def finish_image(self) -> None:
        with self.lock:
            self.done += 1
            self.bar.set_description_str(self._label(), refresh=False)

    def close(self) -> None:
        self.bar.close()


class Downloader:
    def __init__(
        self,
        policy: RetryPolicy,
        timeout: tuple[float, float],
        workers: int,
        stop: threading.Event | None = None,
        max_body_bytes: int = 100 * 1024**2,
        max_attempts: int = 50,
        file_deadline: float = 900.0,
        redirect_problem: Callable[[str], str | None] = lambda url: "redirects are not followed",
        refresh: Callable[[Job], str] | None = None,
        max_refreshes: int = 3,
    ):
        self.refresh = refresh  # a fresh file URL for a job whose signed URL was refused (403): expired
        self.max_refreshes = max_refreshes
        self.redirect_problem = redirect_problem  # why a redirect's Location is refused, or None
        self.max_body_bytes = max_body_bytes
        self.max_attempts = max_attempts
        self.file_deadline = file_deadline
        self.policy = policy
        self.timeout = timeout
        self.workers = max(1, workers)
        self.stop = stop or threading.Event()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.progress: _Progress | None = None

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session()
            with self._lock:
                self._sessions.append(session)
        return session

    def _add(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress.add(n)

    # -- one file ----------------------------------------------------------------------------------

    def fetch(self, job: Job) -> Result:
        result = Result(job, "failed")
        if is_complete(job):
            result.status = "present"
            return result
        failures = 0
        refreshes = 0
        url = job.url  # replaced by a fresh one when a signed URL has expired
        problem = ""
        best = _part_size(job)  # progress = the partial file grew past anything it had before
        deadline = time.monotonic() + self.file_deadline
        while True:
            if self.stop.is_set():
                raise KeyboardInterrupt
            result.attempts += 1
            response = None
            try:
                outcome, response = self._attempt(job, url, result, deadline)
                if outcome == "done":
                    result.status = "done"
                    return result
                problem = outcome
            except _Expired as exc:
                if self.refresh is None or refreshes >= self.max_refreshes:
                    result.error = (f"{exc}; the signed URL was refused after {refreshes} fresh record(s) "
                                    "(data.isic.max_refreshes)")
                    return result
                refreshes += 1
                try:
                    url = self.refresh(job)
                except PipelineError as error:
                    if isinstance(error, _STOPPING):
                        raise
                    result.error = f"{exc}; fetching a fresh URL failed: {error}"
                    return result
                log.info("%s: signed file URL refused (expired?); fetched a fresh one (%d/%d)", job.isic_id,
                         refreshes, self.max_refreshes)
                if result.attempts >= self.max_attempts:
                    result.error = f"{exc} (gave up: {result.attempts} attempts, data.isic.max_attempts)"
                    return result
                continue
            except _Fatal as exc:
                result.error = str(exc)
                return result
            except NETWORK_ERRORS as exc:
                refused = certificate_refused(exc, url)
                if refused is not None:  # every file of that host would fail the same way: stop the download
                    raise refused from None
                problem = f"{type(exc).__name__}: {_short(exc)}"
            except requests.RequestException as exc:  # an invalid URL and the like: retrying will not help
                result.error = f"request failed ({type(exc).__name__}): {_short(exc)}"
                return result
            except OSError as exc:  # disk full, permissions: retrying will not help
                fatal = storage_error(exc)
                if fatal is not None:
                    raise fatal from None
                result.error = f"could not write {job.part}: {exc}"
                return result
            size = _part_size(job)
            progressed = size > best
            best = max(best, size)
            if not progressed:  # a drop after new bytes is not a failure: the next try resumes from there
                failures += 1
            if failures > self.policy.retries:
                result.error = f"{problem} (gave up after {result.attempts} attempts)"
                return result
            if result.attempts >= self.max_attempts:
                result.error = f"{problem} (gave up: {result.attempts} attempts, data.isic.max_attempts)"
                return result
            wait = self.policy.delay(failures, response) if not progressed else 0.0
            if time.monotonic() + wait >= deadline:  # a Retry-After of minutes ends here, not after it
                result.error = f"{problem} (gave up: no time for another try within {self.file_deadline:g} s, data.isic.file_deadline)"
                return result
            log.debug("%s: %s; retrying in %.2f s", job.isic_id, problem, wait)
            sleep(wait, self.stop)

    def _attempt(self, job: Job, url: str, result: Result, deadline: float) -> tuple[str, requests.Response | None]:
        have = _part_size(job)
        if job.size is not None and have > job.size:  # cannot be a prefix of the file: start over
            job.part.unlink()
            have = 0
        if job.size is not None and have == job.size:  # complete but not yet renamed (killed in between)
            self._commit(job)
            return "done", None
        headers = {"Accept-Encoding": "identity"}  # byte offsets must be file offsets
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            # the URL exactly as the archive gave it: a signed query must reach the host unchanged
            response = get_following(self._session(), url, self.redirect_problem, headers=headers, stream=True,
                                     timeout=self.timeout)
        except RedirectRefused as exc:
            raise _Fatal(str(exc)) from None
        with response:
            status = response.status_code
            if status == 416 and have:
                job.part.unlink(missing_ok=True)
                self._add(-have)
                return "416 Range Not Satisfiable for the partial file; starting over", response
            if status in RETRY_STATUSES:
                return f"HTTP {status} {self._message(response, deadline)[:120]}", response
            if status == 403 and is_signed(url):
                raise _Expired(f"HTTP 403 {self._message(response, deadline)[:120]} on a signed URL")
            if status not in (200, 206):
                raise _Fatal(f"HTTP {status} {self._message(response, deadline)[:200]}")
            length = response.headers.get("Content-Length")
            if length is not None and not length.strip().isdigit():
                return f"unreadable Content-Length {length[:40]!r}", response
            if status == 200 and job.size is not None and length is not None and int(length) != job.size:
                return f"server sends {length} bytes but the record says {job.size}", response
            mode = "wb"
            if status == 206:
                match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not have or not match or int(match.group(1)) != have:
                    # not the continuation we asked for: drop the partial file and ask for everything
                    job.part.unlink(missing_ok=True)
                    self._add(-have)
                    return "unexpected partial answer; starting over", response
                mode = "ab"
                result.resumed = True
            elif have:
                result.restarted = True
                self._add(-have)
                have = 0
            expected = job.size if job.size is not None else (have + int(length) if length else None)
            cap = expected if expected is not None else self.max_body_bytes  # never a byte past this
            if cap > self.max_body_bytes:
                raise _Fatal(f"the server announces {cap} bytes, over data.isic.max_body_bytes ({self.max_body_bytes})")
            with open(job.part, mode) as fh:
                try:
                    for chunk in body_pieces(response, CHUNK):
                        if self.stop.is_set():
                            raise KeyboardInterrupt
                        if have + len(chunk) > cap:
                            fh.close()
                            job.part.unlink(missing_ok=True)
                            self._add(-have)
                            what = "the stated size" if expected is not None else "data.isic.max_body_bytes"
                            return f"body longer than {what} ({cap} bytes); partial file dropped", response
                        fh.write(chunk)
                        result.bytes += len(chunk)
                        have += len(chunk)
                        self._add(len(chunk))
                        if time.monotonic() >= deadline:
                            return f"file not complete after {self.file_deadline:g} s (data.isic.file_deadline)", response
                except NETWORK_ERRORS as exc:
                    return f"body cut short: connection lost after {have} of {expected} bytes ({type(exc).__name__})", response
                fh.flush()
                os.fsync(fh.fileno())
        if expected is not None and have != expected:
            what = "body cut short" if have < expected else "body longer than stated"
            return f"{what} ({have} of {expected} bytes)", response
        self._commit(job)
        return "done", response

    @staticmethod
    def _message(response: requests.Response, deadline: float) -> str:
        """The server's words from an error answer, of which at most ERROR_BODY_BYTES are read."""
        read_capped(response, ERROR_BODY_BYTES, deadline, truncate=True, what="an error answer")
        return server_message(response)

    @staticmethod
    def _commit(job: Job) -> None:
        os.replace(job.part, job.dest)

    # -- many files ---------------------------------------------------------------------------------

    def run(self, jobs: list[Job], progress: bool | None = None) -> Report:
        self.start(progress)
        try:
            self.submit(jobs)
        except BaseException:
            self.abort()
            raise
        return self.finish()

    # A download streams: start(), then submit() each batch of jobs as its search page arrives (transfers
    # begin while later pages are still on their way), then finish() waits for all of them; abort() on any
    # error in between stops the workers between chunks (their .part files stay for the next run).

    def start(self, progress: bool | None = None) -> None:
        self._report = Report()
        self._started = time.monotonic()
        self._futures: set[cf.Future] = set()
        self.bytes_done = 0  # bytes of files finished (complete on disk) so far, for the running disk check
        self.progress = _Progress(0, 0, 0, 0, progress)
        self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="isic-dl")

    def submit(self, jobs: list[Job]) -> None:
        present = [j for j in jobs if is_complete(j)]
        self.progress.grow(len(jobs), sum(j.size or 0 for j in jobs), sum(bytes_present(j) for j in jobs),
                           len(present))
        for job in jobs:
            self._futures.add(self._pool.submit(self._fetch_counted, job))
        self._collect(timeout=0)

    def _collect(self, timeout: float | None) -> None:
        finished, self._futures = cf.wait(self._futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        for future in finished:
            self._report.results.append(future.result())

    def finish(self) -> Report:
        try:
            while self._futures:
                self._collect(timeout=0.5)  # short waits: Ctrl-C reaches the main thread in between
        except BaseException:
            self.abort()
            raise
        self._close()
        self._report.seconds = time.monotonic() - self._started
        return self._report

    def abort(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._close()

    def _close(self) -> None:
        self._pool.shutdown(wait=True)
        self.progress.close()
        with self._lock:
            for session in self._sessions:
                session.close()

    def _fetch_counted(self, job: Job) -> Result:
        result = self.fetch(job)
        if result.status == "done":
            if self.progress is not None:
                self.progress.finish_image()
            with self._lock:
                self.bytes_done += min(result.bytes, job.size or result.bytes)
        return result


class _Fatal(Exception):
    """An answer that retrying cannot fix (404, 403, ...)."""


class _Expired(Exception):
    """403 on a signed URL: it has most likely expired, and a fresh record brings a fresh one."""


def _part_size(job: Job) -> int:
    try:
        return job.part.stat().st_size
    except FileNotFoundError:
        return 0


def _short(exc: BaseException) -> str:
    return printable(exc, 160)


def failure_message(failed: list[Result], kept: int, folder: Path, rerun: str) -> PipelineError:
    shown = "\n".join(f"  {r.job.isic_id}: {r.error}" for r in failed[:20])
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    return PipelineError(
        f"{len(failed)} image(s) could not be downloaded:\n{shown}{more}\n"
        f"The other {kept} image(s) are complete in {folder}; partial files are kept hidden there. "
        f"{rerun} to fetch only what is missing."
    )
