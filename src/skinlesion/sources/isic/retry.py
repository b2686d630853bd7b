"""When to retry a request and how long to wait: Retry-After for 429/503, exponential backoff with jitter else."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import http.client

import requests
import urllib3

from ...errors import PipelineError
from .hosts import scrub

# Answers worth another try. 429 and 503 say how long to wait (Retry-After); the rest get backoff.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 600.0  # a server asking for more than 10 minutes gets 10 minutes

# Errors that mean "the request never got a usable answer": resets, refused connections, timeouts, bodies
# cut short (urllib3 raises ProtocolError, which requests wraps as ChunkedEncodingError/ConnectionError).
NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,  # raw reads: IncompleteRead, ProtocolError, ReadTimeoutError
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class CertificateRefused(PipelineError):
    """A host's TLS certificate failed verification: no retry can change that, so the download stops."""


def certificate_refused(exc: BaseException, url: str) -> CertificateRefused | None:
    """The error to stop with when `exc` is a failed certificate verification (else None, a network error
    worth a retry). The reason is found in the chain requests builds (SSLError, MaxRetryError.reason, the
    urllib3 SSLError, ssl.SSLCertVerificationError), looked through at most a few links deep."""
    import ssl
    from urllib.parse import urlsplit

    todo, seen = [exc], 0
    while todo and seen < 16:
        item = todo.pop()
        seen += 1
        if isinstance(item, ssl.SSLCertVerificationError):
            reason = " ".join(str(item.verify_message or item.reason or item).split())[:200]
            host = urlsplit(url).hostname or "the server"
            return CertificateRefused(
                f"the TLS certificate of {host} could not be verified ({reason}); retrying cannot help. Check the "
                "system clock; behind a proxy that re-signs HTTPS, point REQUESTS_CA_BUNDLE at its CA certificate.")
        links = [item.__cause__, item.__context__, getattr(item, "reason", None), *getattr(item, "args", ())]
        todo.extend(link for link in links if isinstance(link, BaseException))
    return None


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 10
    backoff: float = 1.0
    max_backoff: float = 60.0

    def backoff_delay(self, failures: int) -> float:
        """Wait before retry number `failures` (1-based): backoff * 2**(n-1), capped, times a jitter in [0.5, 1]."""
        base = min(self.max_backoff, self.backoff * (2 ** max(0, failures - 1)))
        return base * (0.5 + random.random() / 2)

    def delay(self, failures: int, response: requests.Response | None = None) -> float:
        if response is not None and response.status_code in RETRY_AFTER_STATUSES:
            after = retry_after(response)
            if after is not None:
                return after
        return self.backoff_delay(failures)


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def sleep(seconds: float, stop: threading.Event | None = None) -> None:
    """Sleep, waking early when `stop` is set (Ctrl-C in the main thread)."""
    if seconds <= 0:
        return
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


def printable(text: object, limit: int = 300) -> str:
    """Server-chosen text made safe for a one-line message: control characters (newlines, terminal escapes)
    become spaces, signing values (Signature=, X-Amz-Credential=, ...) are redacted (hosts.scrub), and at
    most `limit` characters are kept."""
    text = scrub(str(text)[: 4 * limit + 1000])
    text = "".join(c if c.isprintable() else " " for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body_pieces(response: requests.Response, size: int) -> Iterator[bytes]:
    """The raw body as it arrives, at most `size` bytes a piece. read1 returns whatever one read brings, so a
    caller can check its deadline after every read, and a .part keeps every byte received before a drop
    (iter_content blocks until a piece is full and loses it with the exception)."""
    raw = response.raw
    if hasattr(raw, "read1"):
        while True:
            data = raw.read1(size, decode_content=False)
            if not data:
                return
            yield data
    else:  # urllib3 < 2.1 (constraints.txt pins 2.8)
        yield from response.iter_content(16 * 1024)


def server_message(response: requests.Response) -> str:
    """The server's own words: {"message": ...} or {"detail": ...} in JSON, else the start of the body
    (made printable: one line, at most 300 characters)."""
    return printable(_server_message(response))


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "detail", "error", "errors"):
            if body.get(key):
                value = body[key]
                return value if isinstance(value, str) else str(value)
    text = (response.text or "").strip()
    return text[:300] or response.reason or f"HTTP {response.status_code}"
