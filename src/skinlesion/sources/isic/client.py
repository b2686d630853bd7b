"""The ISIC Archive API v2 for metadata: paged image search, selection size, one image, license texts.

Every JSON call goes through `get_json`, which retries 429/503 (after Retry-After), 500/502/504 and network
faults (with backoff), and fails at once with the server's message on 400 (bad query), 422 (bad cursor) and
any other client error. The server is not trusted: every body (error answers too) is read with a size cap
(max_json_bytes; ERROR_BODY_BYTES) and every request, all attempts and waits together, has a deadline
(file_deadline); a redirect is followed only within the API's origin; paging stops with an error on a `next`
link that repeats, brings no new usable image, leaves the API's host, or goes past the pages the first
page's count, the limit or MAX_PAGES allow.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlparse

import requests

from ...errors import PipelineError
from .options import Options
from .retry import (NETWORK_ERRORS, RETRY_STATUSES, RetryPolicy, body_pieces, certificate_refused, printable,
                    server_message, sleep)

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the API's maximum
ERROR_BODY_BYTES = 64 * 1024  # of an error answer, only this much is read (for its message)
PAGE_SLACK = 1  # pages beyond what the count implies (images added while paging)
MAX_PAGES = 20_000  # whatever the count says: 2 million images at 100 a page, 4x the archive
LIMIT_PAGE_FACTOR = 10  # with a limit: 10x the pages it needs, so pages a tenth usable still reach it
MAX_REDIRECTS = 3
USER_AGENT = "skinlesion-isic/0.1 (+https://api.isic-archive.com)"


def new_session(pool: int = 1) -> requests.Session:
    """A session without requests' own retries (ours are explicit) and a pool sized for its thread(s)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # bodies are read raw, so every read is seen (deadline) and counted (cap); a compressed stream could
    # decode to nothing for ever between two checks
    session.headers["Accept-Encoding"] = "identity"
    return session


class RedirectRefused(Exception):
    """A redirect whose Location breaks the host rules, or one too many."""


def get_following(session: requests.Session, url: str, problem: Callable[[str], str | None],
                  params: dict | None = None, **kwargs) -> requests.Response:
    """GET with redirects followed by hand: at most MAX_REDIRECTS, each Location first checked by `problem`
    (why it is refused, or None), since requests would follow any host."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = session.get(url, params=params, allow_redirects=False, **kwargs)
        except requests.RequestException:
            raise
        except ValueError as exc:  # requests parses a redirect's Location even when not following it
            raise RedirectRefused(f"redirect to an unreadable Location ({printable(exc, 100)})") from None
        if not response.is_redirect:
            return response
        response.close()
        try:
            location = urljoin(url, response.headers["Location"])
        except ValueError:  # e.g. an unclosed [ in the host
            raise RedirectRefused(f"redirect to an unreadable Location {printable(response.headers['Location'], 200)!r}") from None
        why = problem(location)
        if why:
            raise RedirectRefused(f"redirect to {printable(location, 200)} refused: {why}")
        url, params = location, None  # the Location carries its own query
    raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects (last to {printable(url, 200)})")


class IsicClient:
    def __init__(self, options: Options, stop: threading.Event | None = None):
        self.options = options
        self.base = options.api_url.rstrip("/")
        self.policy = RetryPolicy(options.retries, options.backoff, options.max_backoff)
        self.timeout = (options.connect_timeout, options.read_timeout)
        self.stop = stop
        self.session = new_session()
        self.max_json_bytes = options.max_json_bytes
        self.deadline = options.file_deadline

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "IsicClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    # -- one request, retried -------------------------------------------------------------------

    def get(self, url: str, params: dict | None = None, *, what: str, retries: int | None = None) -> requests.Response:
        """GET with our retry rules, all within file_deadline; returns a 2xx response or raises PipelineError."""
        policy = self.policy if retries is None else RetryPolicy(retries, self.policy.backoff, self.policy.max_backoff)
        deadline = time.monotonic() + self.deadline
        failures = 0
        while True:
            if self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt
            response = None
            try:
                response = self._request(url, params, deadline, what)
                if response.ok:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise self._client_error(response, what)
                problem = f"HTTP {response.status_code} {server_message(response)}"
            except NETWORK_ERRORS as exc:
                refused = certificate_refused(exc, url)
                if refused is not None:
                    raise refused from None
                problem = f"{type(exc).__name__}: {printable(exc, 200)}"
            except RedirectRefused as exc:
                raise PipelineError(f"the ISIC API's answer for {what} is a {exc}. Stopped; check the API URL.") from None
            except requests.RequestException as exc:  # invalid URL and the like: no point retrying
                raise PipelineError(f"could not request {what} from {printable(url, 200)}: {printable(exc)}. Check the API URL.") from None
            failures += 1
            wait = policy.delay(failures, response)
            if failures > policy.retries or time.monotonic() + wait >= deadline:
                raise self._gave_up(url, what, failures, problem, failures > policy.retries)
            log.warning("%s: %s; retry %d/%d in %.2f s", what, problem, failures, policy.retries, wait)
            sleep(wait, self.stop)

    def _request(self, url: str, params: dict | None, deadline: float, what: str) -> requests.Response:
        """One attempt, its body read (capped) before `deadline`; a redirect only within the API's origin."""
        response = get_following(self.session, url, self._redirect_problem, params, timeout=self.timeout, stream=True)
        with response:
            cap = self.max_json_bytes if response.ok else ERROR_BODY_BYTES
            read_capped(response, cap, deadline, truncate=not response.ok, what=what)
        return response

    def _redirect_problem(self, location: str) -> str | None:
        return None if _origin(location) == _origin(self.base) else f"leaves the API ({self.base})"

    def _gave_up(self, url: str, what: str, failures: int, problem: str, out_of_retries: bool) -> PipelineError:
        why = "" if out_of_retries else f" within {self.deadline:g} s (data.isic.file_deadline)"
        return PipelineError(
            f"gave up on {what} after {failures} attempts{why} ({printable(url, 200)}); last problem: {problem}. "
            f"Check the network and the API URL ({self.base}; ISIC_API_URL overrides it), "
            f"or raise {'retries' if out_of_retries else 'data.isic.file_deadline'}."
        )

    def _client_error(self, response: requests.Response, what: str) -> PipelineError:
        message = server_message(response)
        status = response.status_code
        if status == 400:
            return PipelineError(
                f"the ISIC API rejected the search ({status}): {message} Check the query syntax, e.g. "
                '`diagnosis_1:Malignant AND age_approx:[20 TO 40]` or `diagnosis_3:"Melanoma Invasive"` '
                "(AND/OR/TO upper case, values with spaces in double quotes)."
            )
        if status == 422:
            return PipelineError(
                f"the ISIC API rejected the paging cursor ({status}): {message} The archive may have changed "
                "during paging; run the command again (finished files are kept)."
            )
        return PipelineError(f"the ISIC API answered {status} for {what} ({printable(response.url, 200)}): {message}")

    def get_json(self, url: str, params: dict | None = None, *, what: str) -> Any:
        response = self.get(url, params, what=what)
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError):
            raise PipelineError(
                f"the ISIC API sent something other than JSON for {what} ({printable(response.url, 200)}): "
                f"{response.text[:200]!r}. Is the API URL ({self.base}) right?"
            ) from None

    # -- the endpoints ----------------------------------------------------------------------------

    @staticmethod
    def search_params(query: str, collections: tuple[int, ...], limit: int | None = None) -> dict:
        params: dict[str, Any] = {}
        if query:
            params["query"] = query
        if collections:
            params["collections"] = ",".join(str(c) for c in collections)
        params["limit"] = max(1, min(PAGE_SIZE, limit or PAGE_SIZE))
        return params

    def search_pages(
        self, query: str, collections: tuple[int, ...], page_size: int | None = None, *, want: int | None = None,
        usable: Callable[[Any], bool] | None = None,
    ) -> Iterator[tuple[int | None, list[dict]]]:
        """Yield (count, results) per page, following `next` until null; count is set on the first page only.

        Stops with PipelineError on a `next` that was already visited, that leaves the API's scheme and host,
        or that follows a page bringing no new `usable` record (default: one with a valid isic_id), and once
        past the pages the first page's count implies, `want` records need, or MAX_PAGES."""
        usable = usable or _has_valid_id
        params = self.search_params(query, collections, page_size)
        per_page = params["limit"]
        # the first URL in full, as sent, so that a `next` pointing back at it is seen to repeat
        url: str | None = requests.Request("GET", self.url("images/search/"), params=params).prepare().url
        visited: set[str] = set()
        ids: set[str] = set()
        max_pages = page_cap(None, per_page, want)
        page = 0
        while url:
            if page:
                self._check_next(url, visited, page, max_pages)
            visited.add(url)
            body = self.get_json(url, what=f"image search page {page + 1}")
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise PipelineError(f"unexpected search answer from {printable(url, 200)}: no 'results' list.")
            count = body.get("count") if page == 0 else None
            if page == 0:
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise PipelineError(f"unexpected search answer from {printable(url, 200)}: 'count' is {printable(repr(count), 60)}, not a "
                                        "whole number. Is the API URL right?")
                max_pages = page_cap(count, per_page, want)
            results = body["results"]
            new = {r["isic_id"] for r in results if usable(r)} - ids  # a refused record is no progress
            ids |= new
            following = body.get("next")
            if following is not None and not isinstance(following, str):
                raise PipelineError(f"unexpected search answer from {printable(url, 200)}: 'next' is {printable(repr(following), 60)}.")
            if following and not new:
                raise PipelineError(
                    f"the ISIC API's paging does not advance: page {page + 1} ({printable(url, 200)}) brought no new usable "
                    f"image ({len(results)} record(s), none new and valid) but links to another page "
                    f"({printable(following, 200)}). Stopped; check the API URL."
                )
            yield count, results
            url = following or None  # `next` is absolute and carries every parameter
            page += 1

    def _check_next(self, url: str, visited: set[str], page: int, max_pages: int) -> None:
        if url in visited:
            raise PipelineError(
                f"the ISIC API's paging repeats itself: page {page + 1}'s `next` link ({printable(url, 200)}) was already "
                "visited. Stopped; check the API URL."
            )
        if _origin(url) != _origin(self.base):
            raise PipelineError(
                f"the ISIC API's `next` link leaves the API ({printable(url, 200)}; the API is {self.base}). Stopped."
            )
        if page >= max_pages:
            raise PipelineError(
                f"the ISIC API's paging goes on past the {max_pages} page(s) its count, the limit or MAX_PAGES "
                f"allow; stopped at page {page + 1}. Check the API URL."
            )

    def search_count(self, query: str, collections: tuple[int, ...]) -> int:
        for count, _ in self.search_pages(query, collections, page_size=1):
            return int(count or 0)
        return 0

    def search_size(self, query: str, collections: tuple[int, ...]) -> int:
        params = self.search_params(query, collections)
        params.pop("limit")
        body = self.get_json(self.url("images/search/size/"), params, what="selection size")
        try:
            return int(body["size"])
        except (KeyError, TypeError, ValueError):
            raise PipelineError(f"unexpected answer from images/search/size/: {body!r}") from None

    def image(self, isic_id: str) -> dict:
        from ...raw_layout import id_problem

        if id_problem(isic_id):
            raise PipelineError(f"{isic_id!r} is not an image id (ISIC_ and digits, e.g. ISIC_0015719).")
        return self.get_json(self.url(f"images/{isic_id}/"), what=f"image {isic_id}")

    def license_text(self, name: str) -> str:
        """The license text from zip-download/license-file/<name>/ (two retries: there is a fallback)."""
        response = self.get(
            self.url(f"zip-download/license-file/{name}/"), what=f"license {name}", retries=min(2, self.policy.retries)
        )
        text = response.content.decode("utf-8", errors="replace")
        if not text.strip():
            raise PipelineError(f"empty license text for {name}")
        return text if text.endswith("\n") else text + "\n"


def page_cap(count: int | None, per_page: int, want: int | None) -> int:
    """Pages that paging may take: what the count implies (+ slack), what `want` records need at worst,
    and MAX_PAGES, whichever is least."""
    caps = [MAX_PAGES]
    if count is not None:
        caps.append(math.ceil(count / per_page) + PAGE_SLACK)
    if want:
        caps.append(math.ceil(want / per_page) * LIMIT_PAGE_FACTOR + PAGE_SLACK)
    return min(caps)


def _has_valid_id(record) -> bool:
    from ...raw_layout import id_problem

    return isinstance(record, dict) and id_problem(record.get("isic_id")) is None


def _origin(url: str) -> tuple:
    """(scheme, host, port) with the default port filled in; None parts for what cannot be parsed."""
    try:
        parts = urlparse(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return parts.scheme, (parts.hostname or "").lower(), port
    except ValueError:
        return None, None, None


def read_capped(response: requests.Response, cap: int, deadline: float, *, truncate: bool, what: str) -> bytes:
    """Read a streamed body into response._content: at most `cap` bytes (more: PipelineError, or cut when
    `truncate`), before `deadline` (time.monotonic()), checked after every read however small (else a
    TimeoutError, retried like a network fault)."""
    length = response.headers.get("Content-Length")
    if not truncate and length and length.isdigit() and int(length) > cap:
        raise PipelineError(f"the ISIC API's answer for {what} is {length} bytes, over data.isic.max_json_bytes "
                            f"({cap}); refused ({printable(response.url, 200)}).")
    parts, have = [], 0
    for piece in body_pieces(response, 64 * 1024):
        parts.append(piece)
        have += len(piece)
        if have > cap:
            if truncate:
                break
            raise PipelineError(f"the ISIC API's answer for {what} goes past data.isic.max_json_bytes ({cap} "
                                f"bytes); refused ({printable(response.url, 200)}).")
        if time.monotonic() > deadline:
            raise TimeoutError("answer not complete within data.isic.file_deadline")
    body = b"".join(parts)[: cap if truncate else None]
    response._content = body
    response._content_consumed = True
    return body
