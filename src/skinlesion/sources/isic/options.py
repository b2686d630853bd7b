"""What to download and how: one Options object built from params (data.isic), CLI flags and the environment."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ...errors import PipelineError

DEFAULT_API_URL = "https://api.isic-archive.com/api/v2"
# File hosts allowed besides the archive's own (hosts.py: its CloudFront domain and its S3 bucket on every
# endpoint form, and the API's host, are always allowed); data.isic.allowed_hosts adds to these.
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = ()
ENV_API_URL = "ISIC_API_URL"
CLASSES = ("benign", "malignant", "indeterminate")  # diagnosis_1, lower-cased


@dataclass(frozen=True)
class Options:
    api_url: str = DEFAULT_API_URL
    query: str = ""
    collections: tuple[int, ...] = ()
    limit: int | None = None
    max_per_class: tuple[tuple[str, int], ...] = ()  # sorted (class, cap) pairs; empty = no caps
    thumbnails: bool = False
    workers: int = 32  # parallel downloads, each on a kept-alive connection (isic-cli: max(10, cpus), one per file)
    retries: int = 10
    connect_timeout: float = 3.05
    read_timeout: float = 15.0
    backoff: float = 1.0  # first retry waits about this long, doubling each time (with jitter)
    max_backoff: float = 60.0
    # what an untrusted server can make us do (docs/security.md)
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS  # file hosts besides the archive's and the API's own
    max_body_bytes: int = 100 * 1024**2  # a file without a stated size; a stated size above this is refused
    max_json_bytes: int = 16 * 1024**2  # one JSON answer
    max_attempts: int = 50  # requests per file in all, whatever each one brought
    file_deadline: float = 900.0  # seconds per file, all attempts together (and per JSON answer)
    max_refreshes: int = 3  # per file: fresh records (images/<id>/) after a 403 on a signed, expired URL
    allow_skipped: bool = False  # True: records refused as unusable are only counted, the download still succeeds

    @property
    def caps(self) -> dict[str, int]:
        return dict(self.max_per_class)

    @property
    def file_kind(self) -> str:
        return "thumbnail_256" if self.thumbnails else "full"

    def selection(self) -> dict[str, Any]:
        """Everything that decides which bytes end up on disk (not how fast they get there)."""
        return {
            "api_url": self.api_url,
            "query": self.query,
            "collections": list(self.collections),
            "limit": self.limit,
            "max_per_class": self.caps,
            "thumbnails": self.thumbnails,
        }

    def selection_key(self) -> str:
        text = json.dumps(self.selection(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_api_url(configured: str | None, env: Mapping[str, str] | None = None) -> str:
    """ISIC_API_URL wins when set; then the configured value (flag or params); then the public archive."""
    env = os.environ if env is None else env
    url = (env.get(ENV_API_URL) or "").strip() or (configured or "").strip() or DEFAULT_API_URL
    if not url.startswith(("http://", "https://")):
        source = ENV_API_URL if env.get(ENV_API_URL) else "the api_url setting"
        raise PipelineError(f"{source} must be an http(s) URL such as {DEFAULT_API_URL}, got {url!r}.")
    return url.rstrip("/")


def parse_hosts(value: Any) -> tuple[str, ...]:
    """["a.example", "b.example"] or "a.example,b.example" -> lower-case host names."""
    if value is None:
        return DEFAULT_ALLOWED_HOSTS
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts = []
    for item in items:
        host = str(item).strip().lower().rstrip(".")
        if not host:
            continue
        if "/" in host or ":" in host or " " in host:
            raise PipelineError(f"allowed_hosts takes host names such as isic-archive.s3.amazonaws.com, got {item!r}.")
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))


def parse_collections(value: Any) -> tuple[int, ...]:
    """[70, 65], "70,65", "70" or None -> (70, 65)."""
    if value in (None, "", []):
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            number = int(text)
        except ValueError:
            raise PipelineError(
                f"collection ids are integers (e.g. 70 for the 2020 challenge training set), got {text!r}."
            ) from None
        if number < 1:
            raise PipelineError(f"collection ids are positive integers, got {number}.")
        out.append(number)
    return tuple(dict.fromkeys(out))


def parse_caps(value: Any) -> tuple[tuple[str, int], ...]:
    """{"benign": 5000, "malignant": 5000} or "benign=5000,malignant=5000" -> sorted pairs."""
    if not value:
        return ()
    if isinstance(value, str):
        pairs = {}
        for part in value.split(","):
            if not part.strip():
                continue
            name, sep, number = part.partition("=")
            if not sep:
                raise PipelineError(
                    f"--max-per-class takes CLASS=N pairs such as benign=5000,malignant=5000, got {part!r}."
                )
            pairs[name.strip()] = number.strip()
        value = pairs
    caps = {}
    for name, number in dict(value).items():
        key = str(name).strip().lower()
        if key not in CLASSES:
            raise PipelineError(
                f"unknown class {name!r} in max_per_class: the caps apply to diagnosis_1, one of {', '.join(CLASSES)}."
            )
        try:
            cap = int(number)
        except (TypeError, ValueError):
            raise PipelineError(f"max_per_class {key} must be a whole number, got {number!r}.") from None
        if cap < 0:
            raise PipelineError(f"max_per_class {key} must be 0 or more, got {cap}.")
        caps[key] = cap
    return tuple(sorted(caps.items()))


def _positive(name: str, value: Any, kind=int, minimum=1, allow_none=False):
    if value is None and allow_none:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise PipelineError(f"{name} must be a number, got {value!r}.") from None
    if number < minimum:
        raise PipelineError(f"{name} must be at least {minimum}, got {value!r}.")
    return number


def from_config(cfg: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> Options:
    """Options from a data.isic-shaped mapping (params.yaml, or CLI flags merged over it)."""
    cfg = dict(cfg or {})
    defaults = Options()
    return Options(
        api_url=resolve_api_url(cfg.get("api_url"), env),
        query=str(cfg.get("query") or "").strip(),
        collections=parse_collections(cfg.get("collections")),
        limit=_positive("limit", cfg.get("limit"), allow_none=True),
        max_per_class=parse_caps(cfg.get("max_per_class")),
        thumbnails=bool(cfg.get("thumbnails", False)),
        workers=_positive("workers", cfg.get("workers", defaults.workers)),
        retries=_positive("retries", cfg.get("retries", defaults.retries), minimum=0),
        connect_timeout=_positive("connect_timeout", cfg.get("connect_timeout", defaults.connect_timeout), float, 0.001),
        read_timeout=_positive("read_timeout", cfg.get("read_timeout", defaults.read_timeout), float, 0.001),
        backoff=_positive("backoff", cfg.get("backoff", defaults.backoff), float, 0),
        max_backoff=_positive("max_backoff", cfg.get("max_backoff", defaults.max_backoff), float, 0),
        allowed_hosts=parse_hosts(cfg.get("allowed_hosts")),
        max_body_bytes=_positive("max_body_bytes", cfg.get("max_body_bytes", defaults.max_body_bytes)),
        max_json_bytes=_positive("max_json_bytes", cfg.get("max_json_bytes", defaults.max_json_bytes)),
        max_attempts=_positive("max_attempts", cfg.get("max_attempts", defaults.max_attempts)),
        file_deadline=_positive("file_deadline", cfg.get("file_deadline", defaults.file_deadline), float, 0.001),
        max_refreshes=_positive("max_refreshes", cfg.get("max_refreshes", defaults.max_refreshes), minimum=0),
        allow_skipped=bool(cfg.get("allow_skipped", defaults.allow_skipped)),
    )
