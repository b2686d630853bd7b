"""The ISIC Archive API v2 for metadata: paged image search, selection size, one image, license texts.

Every JSON call goes through `get_json`, which retries 429/503 (after Retry-After), 500/502/504 and network
faults (with backoff), and fails at once with the server's message on 400 (bad query), 422 (bad cursor) and
any other client error. The server is not trusted: every body is read with a size cap (max_json_bytes) and a
deadline, and paging stops with an error on a `next` link that repeats, does not advance, leaves the API's
host, or goes past the pages the first page's count implies.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlparse

import requests

from ...errors import PipelineError
from .options import Options
from .retry import NETWORK_ERRORS, RETRY_STATUSES, RetryPolicy, printable, server_message, sleep

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the API's maximum
ERROR_BODY_BYTES = 64 * 1024  # of an error answer, only this much is read (for its message)
PAGE_SLACK = 1  # pages beyond what the count implies (images added while paging)
USER_AGENT = "skinlesion-isic/0.1 (+https://api.isic-archive.com)"


def new_session(pool: int = 1) -> requests.Session:
    """A session without requests' own retries (ours are explicit) and a pool sized for its thread(s)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


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
        """GET with our retry rules; returns a 2xx response or raises PipelineError."""
        policy = self.policy if retries is None else RetryPolicy(retries, self.policy.backoff, self.policy.max_backoff)
        failures = 0
        while True:
            if self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt
            response = None
            try:
                response = self.session.get(url, params=params, timeout=self.timeout, stream=True)
                with response:
                    cap = self.max_json_bytes if response.ok else ERROR_BODY_BYTES
                    read_capped(response, cap, self.deadline, truncate=not response.ok, what=what)
                if response.ok:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise self._client_error(response, what)
                problem = f"HTTP {response.status_code} {server_message(response)}"
            except NETWORK_ERRORS as exc:
                problem = f"{type(exc).__name__}: {printable(exc, 200)}"
            except requests.RequestException as exc:  # invalid URL and the like: no point retrying
                raise PipelineError(f"could not request {what} from {printable(url, 200)}: {printable(exc)}. Check the API URL.") from None
            failures += 1
            if failures > policy.retries:
                raise PipelineError(
                    f"gave up on {what} after {failures} attempts ({printable(url, 200)}); last problem: {problem}. "
                    f"Check the network and the API URL ({self.base}; ISIC_API_URL overrides it), "
                    "or raise retries."
                )
            wait = policy.delay(failures, response)
            log.warning("%s: %s; retry %d/%d in %.2f s", what, problem, failures, policy.retries, wait)
            sleep(wait, self.stop)

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
        self, query: str, collections: tuple[int, ...], page_size: int | None = None
    ) -> Iterator[tuple[int | None, list[dict]]]:
        """Yield (count, results) per page, following `next` until null; count is set on the first page only.

        Stops with PipelineError on a `next` that was already visited, that leaves the API's scheme and host,
        or that follows a page bringing no new image, and once past the pages the first page's count implies."""
        params = self.search_params(query, collections, page_size)
        per_page = params["limit"]
        # the first URL in full, as sent, so that a `next` pointing back at it is seen to repeat
        url: str | None = requests.Request("GET", self.url("images/search/"), params=params).prepare().url
        visited: set[str] = set()
        ids: set[str] = set()
        max_pages: int | None = None
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
                max_pages = math.ceil(count / per_page) + PAGE_SLACK
            results = body["results"]
            new = {r.get("isic_id") for r in results if isinstance(r, dict) and isinstance(r.get("isic_id"), str)}
            advanced = bool(new - ids)
            ids |= new
            following = body.get("next")
            if following is not None and not isinstance(following, str):
                raise PipelineError(f"unexpected search answer from {printable(url, 200)}: 'next' is {printable(repr(following), 60)}.")
            if following and not advanced:
                raise PipelineError(
                    f"the ISIC API's paging does not advance: page {page + 1} ({printable(url, 200)}) brought no new image but "
                    f"links to another page ({printable(following, 200)}). Stopped; check the API URL."
                )
            yield count, results
            url = following or None  # `next` is absolute and carries every parameter
            page += 1

    def _check_next(self, url: str, visited: set[str], page: int, max_pages: int | None) -> None:
        if url in visited:
            raise PipelineError(
                f"the ISIC API's paging repeats itself: page {page + 1}'s `next` link ({printable(url, 200)}) was already "
                "visited. Stopped; check the API URL."
            )
        if _origin(url) != _origin(self.base):
            raise PipelineError(
                f"the ISIC API's `next` link leaves the API ({printable(url, 200)}; the API is {self.base}). Stopped."
            )
        if max_pages is not None and page >= max_pages:
            raise PipelineError(
                f"the ISIC API's paging goes on past the {max_pages} page(s) its count implies; stopped at page "
                f"{page + 1}. Check the API URL."
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
    `truncate`), within `deadline` seconds (else a TimeoutError, retried like a network fault)."""
    length = response.headers.get("Content-Length")
    if not truncate and length and length.isdigit() and int(length) > cap:
        raise PipelineError(f"the ISIC API's answer for {what} is {length} bytes, over data.isic.max_json_bytes "
                            f"({cap}); refused ({printable(response.url, 200)}).")
    started = time.monotonic()
    parts, have = [], 0
    for chunk in response.iter_content(64 * 1024):
        parts.append(chunk)
        have += len(chunk)
        if have > cap:
            if truncate:
                break
            raise PipelineError(f"the ISIC API's answer for {what} goes past data.isic.max_json_bytes ({cap} "
                                f"bytes); refused ({printable(response.url, 200)}).")
        if time.monotonic() - started > deadline:
            raise TimeoutError(f"answer not complete after {deadline:.0f} s (data.isic.file_deadline)")
    body = b"".join(parts)[: cap if truncate else None]
    response._content = body
    response._content_consumed = True
    return body
