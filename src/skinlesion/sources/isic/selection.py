"""Which images to fetch, decided on metadata alone: query, collections, limit and per-class caps.

Without caps the search is paged in the archive's order until `limit`. With caps on diagnosis_1 each capped
class is searched on its own (`(<query>) AND diagnosis_1:<Class>`), paging only until its cap, so a
5000/5000 balanced subset costs about 100 pages instead of the whole archive. Classes without a cap are
left out (a cap says "this class, up to N"); the union is then put back in ISIC id order and cut at `limit`.
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urlparse

from tqdm.auto import tqdm

from ...errors import PipelineError
from ...raw_layout import id_problem, license_problem
from . import hosts
from .client import IsicClient
from .options import Options

log = logging.getLogger(__name__)

FIXED = ("isic_id", "attribution", "copyright_license")


@dataclass
class Selection:
    records: list[dict]
    matched: int | None = None  # what the query and collections match before limit/caps (first page count)
    per_class: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # records refused, by reason

    def __len__(self) -> int:
        return len(self.records)


def record_class(record: Mapping) -> str | None:
    value = ((record.get("metadata") or {}).get("clinical") or {}).get("diagnosis_1")
    return str(value).strip().lower() if value else None


def file_info(record: Mapping, thumbnails: bool) -> tuple[str, int | None]:
    """(url, size) of the file to fetch: files.full, or files.thumbnail_256 in thumbnail mode."""
    kind = "thumbnail_256" if thumbnails else "full"
    info = (record.get("files") or {}).get(kind) or {}
    url = info.get("url")
    if not url:
        raise PipelineError(f"image {record.get('isic_id')} has no files.{kind}.url in its record.")
    size = info.get("size")
    return url, (int(size) if size is not None else None)


def file_name(record: Mapping, thumbnails: bool) -> str:
    """<isic_id><ext>, the extension taken from the file URL (.jpg, sometimes .png)."""
    url, _ = file_info(record, thumbnails)
    ext = posixpath.splitext(urlparse(url).path)[1].lower()
    if ext not in (".jpg", ".jpeg", ".png"):
        ext = ".jpg"
    isic_id = record["isic_id"]
    if id_problem(isic_id):
        raise PipelineError(f"refusing an unsafe isic_id from the API: {str(isic_id)[:80]!r}")
    return isic_id + ext


class HostRefused(PipelineError):
    """A file URL on a host that is not allowed: the download stops at the first one, naming it."""


def url_problem(url, api_url: str, allowed_hosts) -> str | None:
    """Why a file URL is refused (None when it may be fetched): not https (http only with an http API),
    or not on the archive's hosts, the API's host or data.isic.allowed_hosts. For redirects' Locations."""
    problem = hosts.url_problem(url, api_url)
    if problem:
        return problem
    host = hosts.host_problem(url, api_url, allowed_hosts)
    return f"file host {host[:100]!r} not allowed ({hosts.SETTING})" if host is not None else None


def record_problem(record, options: Options) -> str | None:
    """Why a search result is skipped (None when it is usable): anything that would become a path, a URL
    or a byte count is checked here, before it is used. A file URL on a host not allowed is no reason to
    skip but to stop: HostRefused, at the first such record, names the host and the setting."""
    if not isinstance(record, dict):
        return "record not a JSON object"
    problem = id_problem(record.get("isic_id")) or license_problem(record.get("copyright_license"))
    if problem:
        return problem
    if record.get("attribution") is not None and not isinstance(record["attribution"], str):
        return "bad attribution"
    metadata = record.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or any(not isinstance(metadata.get(k) or {}, dict) for k in ("acquisition", "clinical"))
    ):
        return "bad metadata"
    kind = options.file_kind
    files = record.get("files")
    info = files.get(kind) if isinstance(files, dict) else None
    if not isinstance(info, dict) or not info.get("url"):
        return f"no files.{kind}.url"
    problem = hosts.url_problem(info["url"], options.api_url)
    if problem:
        return problem
    host = hosts.host_problem(info["url"], options.api_url, options.allowed_hosts)
    if host is not None:
        raise HostRefused(hosts.refused_host_message(host, f"files.{kind}.url of {record['isic_id']}"))
    size = info.get("size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            return f"bad files.{kind}.size"
        if size > options.max_body_bytes:
            return f"files.{kind}.size over data.isic.max_body_bytes"
    return None


def flatten(record: Mapping) -> dict:
    """One metadata.csv row: the fixed fields, then acquisition and clinical keys without their prefix."""
    row = {key: record.get(key) for key in FIXED}
    metadata = record.get("metadata") or {}
    for section in ("acquisition", "clinical"):
        for key, value in (metadata.get(section) or {}).items():
            if key not in FIXED:
                row[key] = value
    return row


def capped_query(query: str, cls: str) -> str:
    term = f"diagnosis_1:{cls.capitalize()}"
    return f"({query}) AND {term}" if query else term


def _collect(client: IsicClient, query: str, collections, want: int | None, bar, seen: set,
             options: Options, skipped: Counter, on_page: Callable[[list[dict]], None] | None = None,
             ) -> tuple[list[dict], int | None]:
    records: list[dict] = []
    on_page = on_page or (lambda new: None)
    matched = None
    pages = client.search_pages(query, collections, page_size=want, want=want,
                                usable=lambda record: record_problem(record, options) is None)
    for count, results in pages:
        first = len(records)
        if count is not None:
            matched = int(count)
            if bar is not None:
                bar.total = (bar.total or 0) + (min(matched, want) if want else matched)
                bar.refresh()
        for record in results:
            problem = record_problem(record, options)
            if problem:
                skipped[problem] += 1
                shown = str(record.get("isic_id"))[:80] if isinstance(record, dict) else "?"
                log.debug("isic: skipped a record (%s): isic_id %r", problem, shown)
                continue
            isic_id = record["isic_id"]
            if isic_id in seen:
                continue
            seen.add(isic_id)
            records.append(record)
            if bar is not None:
                bar.update(1)
            if want is not None and len(records) >= want:
                pages.close()
                on_page(records[first:])
                return records, matched
        on_page(records[first:])
    return records, matched


def select(client: IsicClient, options: Options, progress: bool | None = None,
           on_page: Callable[[list[dict]], None] | None = None) -> Selection:
    """The selection; `on_page` is called with each search page's newly selected records as the page
    arrives (so their files can start), or once with them all when per-class caps reorder the selection."""
    disable = None if progress is None else not progress
    with tqdm(desc="metadata", unit=" img", total=0, disable=disable, leave=False) as bar:
        seen: set[str] = set()
        skipped: Counter = Counter()
        caps = options.caps
        if not caps:
            records, matched = _collect(client, options.query, options.collections, options.limit, bar, seen,
                                        options, skipped, on_page)
        else:
            records, matched = [], 0
            for cls, cap in caps.items():
                want = min(cap, options.limit) if options.limit else cap
                if want == 0:
                    continue
                found, count = _collect(client, capped_query(options.query, cls), options.collections, want, bar,
                                        seen, options, skipped)
                # trust the record over the query: keep only what really is of this class
                kept = [r for r in found if record_class(r) == cls]
                if len(kept) < len(found):
                    log.warning("%d record(s) found for %s had another diagnosis_1; left out", len(found) - len(kept), cls)
                records.extend(kept)
                matched += count or 0
            records.sort(key=lambda r: str(r["isic_id"]))
            if options.limit:
                records = records[: options.limit]
            if on_page is not None:
                on_page(records)
    per_class: dict[str, int] = {}
    for record in records:
        key = record_class(record) or "unknown"
        per_class[key] = per_class.get(key, 0) + 1
    if skipped:
        log.warning("isic: %d record(s) skipped: %s", sum(skipped.values()),
                    ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())))
    return Selection(records=records, matched=matched, per_class=dict(sorted(per_class.items())),
                     skipped=dict(sorted(skipped.items())))


def describe(options: Options) -> str:
    parts = [f"query={options.query!r}" if options.query else "query=(all)"]
    parts.append(f"collections={','.join(map(str, options.collections))}" if options.collections else "collections=(all)")
    if options.limit:
        parts.append(f"limit={options.limit}")
    if options.caps:
        parts.append("max_per_class=" + ",".join(f"{k}={v}" for k, v in options.caps.items()))
    parts.append("thumbnails" if options.thumbnails else "full files")
    return ", ".join(parts)
