"""One download, shared by `skinlesion download` and the isic source: select, check disk, write, fetch.

`download(options, folder)` works in place: it can be interrupted at any point and run again with the
same options, and then fetches only what is missing or incomplete. It writes isic-cli's layout: the images
flat in the folder (<isic_id>.jpg), metadata.csv, attribution.txt and licenses/ beside them, so either tool
can continue the other's folder (both take a file of the stated size as done).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...errors import PipelineError
from ...io import write_json
from ...raw_layout import IMAGE_SUFFIXES, id_problem
from ...raw_packs import UNPACKED
from .client import IsicClient
from .layout import LicenseFetcher, write_small_files
from .options import Options
from .retry import RetryPolicy
from .selection import Selection, describe, file_info, file_name, record_problem, select, url_problem
from .transfer import Downloader, Job, Report, bytes_present, failure_message, finished_name

log = logging.getLogger(__name__)

DISK_MARGIN_BYTES = 100 * 1024**2  # keep at least this much free beyond the download...
DISK_MARGIN_FRACTION = 0.05  # ...or 5 % of it, whichever is more
LOCK_NAME = ".isic-download.lock"
STATE_NAME = ".isic-download.json"  # what an unfinished download in this folder is fetching


class IncompleteDownload(PipelineError):
    """Every file that could be fetched is complete, but records the selection matched were refused as
    unusable (bad id, license, URL): the download is not what was asked for. `outcome` has its counts."""

    def __init__(self, message: str, outcome: "Outcome"):
        super().__init__(message)
        self.outcome = outcome


@dataclass
class Outcome:
    summary: dict  # deterministic (goes into source.json): options, counts, bytes
    report: Report
    line: str  # the closing summary line


def adopt_images_folder(folder: Path) -> int:
    """Move the images of an earlier download's images/ (the layout before isic-cli's flat one) up into
    `folder`, with their .part files, so a rerun continues instead of fetching them again. Only in a folder
    a download wrote (source.json or an unfinished download's state), only names a download writes, never
    over a file already there. Returns the number moved."""
    old = folder / "images"
    if not old.is_dir() or old.is_symlink() or not _written_by_download(folder):
        return 0
    moved = 0
    for entry in sorted(old.iterdir()):
        stem, suffix = os.path.splitext(finished_name(entry.name))
        if id_problem(stem) or suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file() or entry.is_symlink():
            continue
        target = folder / entry.name
        if not target.exists():
            entry.rename(target)
            moved += 1
    try:
        old.rmdir()
    except OSError:
        log.warning("%s still holds files not moved (not an image's name, or one already at the top); left as "
                    "they are", old)
    if moved:
        log.info("isic: moved %d image(s) of an earlier download from %s up into %s (isic-cli's flat layout)",
                 moved, old, folder)
    return moved


def _written_by_download(folder: Path) -> bool:
    """An unfinished download's state file, or the source.json `skinlesion download` writes (source isic):
    not the source.json of another source's raw folder, nor of an unpacked one."""
    if (folder / STATE_NAME).is_file():
        return True
    try:
        info = json.loads((folder / "source.json").read_text(encoding="utf-8")[:1_000_000])
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("source") == "isic" and not (folder / UNPACKED).exists()


def jobs_for(records: list[dict], images: Path, thumbnails: bool) -> list[Job]:
    from ...io import check_inside

    jobs = []
    for record in records:
        url, size = file_info(record, thumbnails)
        dest = images / file_name(record, thumbnails)
        check_inside(dest, images)  # file_name admits only ISIC_ID names; this is the second lock on the door
        jobs.append(Job(str(record["isic_id"]), url, size, dest))
    return jobs


def disk_margin(needed: int) -> int:
    return max(DISK_MARGIN_BYTES, int(needed * DISK_MARGIN_FRACTION))


def free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(folder: Path, needed: int) -> None:
    free = free_bytes(folder)
    margin = disk_margin(needed)
    if needed + margin > free:
        raise PipelineError(
            f"not enough free disk space in {folder}: the download needs {human(needed)} ({needed} bytes) "
            f"plus a margin of {human(margin)}, but only {human(free)} is free. Free some space, choose another "
            "--out, or narrow the selection (--limit, --max-per-class, --thumbnails)."
        )


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """One download per folder at a time (two would fight over the same .part files).

    The lock is an flock on .isic-download.lock, which the kernel releases when its process ends, however
    it ends: a lock file left by a dead process never blocks. The holder writes who it is into the file, so
    a refused download can say who holds the lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = folder / LOCK_NAME
    while True:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise PipelineError(
                f"another download ({lock_holder(path)}) is writing into {folder} right now; wait for it to "
                "finish or stop it, or choose another --out."
            ) from None
        try:  # a holder that just finished unlinked the file we opened: lock the one that is there now
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}))
        fh.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def lock_holder(path: Path) -> str:
    """Who holds the download lock, as its holder wrote it: 'pid 123 on host, since ...: command'."""
    try:
        info = json.loads(path.read_text(encoding="utf-8")[:2000])
        text = f"pid {int(info['pid'])} on {str(info.get('host'))[:80]}, since {str(info.get('started'))[:40]}"
        command = str(info.get("command") or "")[:200]
        return f"{text}: {command}" if command else text
    except (OSError, ValueError, TypeError, KeyError):
        return "a process that has not said who it is yet"


def check_same_kind(folder: Path, options: Options) -> None:
    """Full files and thumbnails share names (<isic_id>.jpg): never let one replace the other in a folder."""
    for name in ("source.json", STATE_NAME):
        try:
            recorded = json.loads((folder / name).read_text(encoding="utf-8")).get("files")
        except (OSError, ValueError, AttributeError):
            continue
        if recorded and recorded != options.file_kind:
            raise PipelineError(
                f"{folder} holds {recorded} files from an earlier download, and this one asks for "
                f"{options.file_kind}. Use another --out so full images and thumbnails never mix."
            )


def summary_of(options: Options, selection: Selection, total_bytes: int, licenses: dict | None = None) -> dict:
    summary = {
        **options.selection(),
        "files": options.file_kind,
        "matched": selection.matched,
        "selected": len(selection),
        "per_class": selection.per_class,
        "skipped": selection.skipped,
        "bytes": total_bytes,
    }
    if licenses is not None:
        summary["licenses"] = licenses
    return summary


def dry_run(options: Options, folder: Path | None = None, progress: bool | None = None) -> dict:
    """How many images and bytes the selection would fetch, without fetching any image byte.

    Full files without per-class caps: the first page's count and images/search/size/ (two small calls).
    Otherwise the selection is made from the records and their files.*.size summed.
    """
    with IsicClient(options) as client:
        if not options.caps and not options.thumbnails:
            count = 0
            for first_count, results in client.search_pages(options.query, options.collections, page_size=1):
                count = int(first_count or 0)
                for record in results:  # a file host not allowed is said now, not when the files start
                    record_problem(record, options)
                break
            if options.limit is None or options.limit >= count:
                size = client.search_size(options.query, options.collections)
                return {**options.selection(), "files": "full", "images": count, "bytes": size,
                        "method": "images/search/size/"}
        selection = select(client, options, progress)
    total = sum(file_info(r, options.thumbnails)[1] or 0 for r in selection.records)
    result = {**options.selection(), "files": options.file_kind, "images": len(selection), "bytes": total,
              "per_class": selection.per_class, "method": "records"}
    if folder is not None and folder.is_dir():
        jobs = jobs_for(selection.records, folder, options.thumbnails)
        result["bytes_to_fetch"] = total - sum(bytes_present(j) for j in jobs)
    return result


def download(
    options: Options, folder: Path, progress: bool | None = None, rerun: str = "Run the same command again"
) -> Outcome:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{folder} exists and is not a folder; choose another --out.")
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with exclusive(folder):
        check_same_kind(folder, options)
        adopt_images_folder(folder)
        downloader = Downloader(
            RetryPolicy(options.retries, options.backoff, options.max_backoff),
            (options.connect_timeout, options.read_timeout),
            options.workers,
            stop,
            max_body_bytes=options.max_body_bytes,
            max_attempts=options.max_attempts,
            file_deadline=options.file_deadline,
            redirect_problem=lambda url: url_problem(url, options.api_url, options.allowed_hosts),
            refresh=lambda job: fresh_url(options, job, stop),
            max_refreshes=options.max_refreshes,
        )
        feed = _Feed(folder, options, downloader, LicenseFetcher(options, stop))
        downloader.start(progress)
        try:
            with IsicClient(options, stop) as client:
                log.info("isic: selecting from %s (%s)", options.api_url, describe(options))
                selection = select(client, options, progress, on_page=feed.page)
                if not selection.records:
                    if selection.skipped:
                        reasons = ", ".join(f"{n} {reason}" for reason, n in selection.skipped.items())
                        raise PipelineError(
                            f"the selection has no usable images ({describe(options)}): every record the archive "
                            f"sent was refused ({reasons}). Check the API URL."
                        )
                    raise PipelineError(
                        f"the selection matched no images ({describe(options)}). Check the query and the "
                        "collection ids (e.g. 70 = 2020 challenge training set); try --dry-run to see counts."
                    )
                feed.flush()
                licenses = write_small_files(selection.records, folder, feed.licenses)
        except BaseException:
            downloader.abort()
            raise
        report = downloader.finish()
    jobs = feed.jobs
    total = sum(j.size or 0 for j in jobs)
    wanted = {j.dest.name for j in jobs}
    extra = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
             and p.name not in wanted]
    if extra:
        log.warning("%d image(s) in %s are not in this selection (left from an earlier download?); "
                    "metadata.csv lists only the selection", len(extra), folder)
    if report.failed:
        raise failure_message(report.failed, len(jobs) - len(report.failed), folder, rerun)
    outcome = Outcome(summary_of(options, selection, total, licenses), report, closing_line(report, folder))
    if selection.skipped and not options.allow_skipped:
        raise IncompleteDownload(incomplete_message(selection, folder), outcome)
    (folder / STATE_NAME).unlink(missing_ok=True)
    return outcome


def incomplete_message(selection: Selection, folder: Path) -> str:
    skipped = sum(selection.skipped.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(selection.skipped.items()))
    return (
        f"the download is incomplete: {skipped} of the {skipped + len(selection)} record(s) the archive sent for "
        f"this selection were refused as unusable ({reasons}); the other {len(selection)} image(s) are complete "
        f"in {folder}, with metadata.csv listing only those. Running again will not fetch what cannot be used: "
        "check the API URL, or accept the download without them with data.isic.allow_skipped: true "
        "(skinlesion download: --allow-skipped)."
    )


def fresh_url(options: Options, job: Job, stop: threading.Event | None = None) -> str:
    """The file URL of a fresh copy of the job's record (images/<isic_id>/), for a signed URL that expired.
    The record must still be usable, the same image (same id) and the same size."""
    with IsicClient(options, stop) as client:
        record = client.image(job.isic_id)
    if not isinstance(record, dict) or record.get("isic_id") != job.isic_id:
        raise PipelineError(f"images/{job.isic_id}/ answered with another record")
    problem = record_problem(record, options)  # a host not allowed raises HostRefused: the download stops
    if problem:
        raise PipelineError(f"the fresh record is unusable ({problem})")
    url, size = file_info(record, options.thumbnails)
    if size != job.size:
        raise PipelineError(f"the fresh record states {size} bytes, the search page {job.size}")
    return url


class _Feed:
    """Hands each search page's records to the downloader as the page arrives, after a disk check.

    Files start once the second page has been read (or paging has ended): a broken paging (a bad cursor, a
    `next` link that repeats) shows there, and then costs no file transfer; from the third page on, files
    download while later pages are still on their way. Each batch is checked against the free disk space:
    what is still to be written of everything queued so far, plus the margin."""

    def __init__(self, folder: Path, options: Options, downloader: Downloader, licenses: LicenseFetcher):
        self.folder, self.options, self.downloader, self.licenses = folder, options, downloader, licenses
        self.pending: list[dict] = []
        self.pages = 0
        self.jobs: list[Job] = []
        self.needed = 0  # bytes to write for every job queued so far (what is on disk already left out)

    def page(self, records: list[dict]) -> None:
        self.pending.extend(records)
        self.licenses.want(records)
        self.pages += 1
        if self.pages >= 2:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        jobs = jobs_for(self.pending, self.folder, self.options.thumbnails)
        needed = sum((j.size or 0) - bytes_present(j) for j in jobs)
        check_disk(self.folder, self.needed + needed - self.downloader.bytes_done)
        if not self.jobs:  # the first batch: from here on the folder holds a download in progress
            write_json(self.folder / STATE_NAME, {**self.options.selection(), "files": self.options.file_kind})
        self.needed += needed
        self.jobs += jobs
        self.pending = []
        self.downloader.submit(jobs)


def closing_line(report: Report, folder: Path) -> str:
    done, present = report.count("done"), report.count("present")
    rate = done / report.seconds if report.seconds > 0 else 0.0
    mbps = report.received / report.seconds / 1e6 if report.seconds > 0 else 0.0
    parts = [f"isic: {done + present} images complete in {folder}", f"{done} downloaded ({human(report.received)})"]
    if present:
        parts.append(f"{present} already present")
    if report.resumed:
        parts.append(f"{report.resumed} resumed from partial files")
    parts.append(f"{report.seconds:.1f} s, {rate:.1f} images/s, {mbps:.1f} MB/s")
    return "; ".join(parts)
