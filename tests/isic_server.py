"""A local ISIC Archive API v2 look-alike on 127.0.0.1, for the tests and the download benchmark.

It behaves like the archive as described in ../shared/isic-api.md (docs/isic.md): paged images/search/ with
opaque cursors and `count` on the first page only, images/search/size/, images/{id}/, collections/{id}/
(isic-cli checks a -c id there), the license files,
and the image bytes (real JPEGs and some PNGs made with Pillow), with Range support that can be switched
off. The files are served from a second loopback host (`files_host`, 127.0.1.1 beside 127.0.0.1), which a
client must allow as a user would (data.isic.allowed_hosts; `client_config` does), in the archive's three
URL shapes in turn: CloudFront (`/<uuid>/<uuid>.jpg?Expires=..&Signature=..&Key-Pair-Id=..`, signed, checked,
403 once expired: `sign_ttl`, `search_ttl`, `clock`), S3 virtual-hosted (`/images/<id>.jpg`) and path-style
(`/isic-archive/images/<id>.jpg`). Whatever the shape, a file request is logged (`path`) and matched by
faults under the file's key, `/s3/images/<id>.<ext>` or `/s3/thumbnails/<id>_thumbnail.jpg` (the path as
sent is `raw_path`, its query `raw_query`); `server.key_of(record)` gives it. The last record lacks every
optional field (no clinical metadata at all, `clinical: {}` as the archive sends it). Faults are injected per test:

    server.faults.append(Fault("/s3/images/", status=503, retry_after="1", times=2))   # per file: 2x 503
    server.faults.append(Fault("/s3/", drop_after=1000))       # headers with full length, 1000 bytes, close
    server.faults.append(Fault("/images/search/", delay=0.5))   # a slow answer
    server.bad_cursor_page = 2                                  # page 2's `next` carries a broken cursor
    server.range_support = False; server.latency = 0.05; server.rate = 200_000   # bytes/s per file body

and, to imitate the archive badly on purpose (tests/test_hostile_archive.py):

    server.record_hook = lambda record: {**record, "isic_id": "../x"}    # rewrite every record it sends
    server.next_hook = lambda next_url, request_url: request_url         # rewrite every page's `next`
    server.count_hook = lambda count: 1                                  # rewrite the first page's count
    server.faults.append(Fault("/s3/", extra=-1, no_length=True))        # a body that never ends
    server.faults.append(Fault("/images/search/", endless_json=True))    # a JSON page that never ends
    server.faults.append(Fault("/s3/", status=503, endless_json=True))   # ... an error answer that never ends
    server.faults.append(Fault("/images/search/", trickle=0.3))          # one byte every 0.3 s
    server.faults.append(Fault("/s3/", redirect="http://127.0.0.2:.../x"))  # a 302 to anywhere
    FakeIsic(12, host="127.0.0.2")                                       # a second server on another address

Every request is logged in `server.log` (path, query, Range header, status, bytes sent, arrival time, the
client's address and port, whether TCP_NODELAY is set on its connection).

`FakeIsic(real_hosts=True)` (HTTPS) names the archive's own hosts in its URLs (api.isic-archive.com,
content.isic-archive.com, the bucket virtual-hosted and path-style) and, inside `real_host_names(server)`,
answers for them: a client with its default settings then downloads from it unchanged.
`FakeIsic(tls=True)` serves both hosts over HTTPS with a self-signed certificate made at start for the two
addresses (`cert_file`: REQUESTS_CA_BUNDLE for a client); `connect_latency` delays the first answer on each
new connection (the TCP and TLS handshakes' round trips), `latency` every answer (the request's).

Run on its own (the benchmark does): python tests/isic_server.py --images 200 --latency 0.05 [--port 8000]
[--tls] [--connect-latency 0.1] [--faults SEED] prints the API URL on the first line of stdout (with --tls the
certificate's path on the second) and serves until killed; GET /__reset__
forgets the log and the faults fired, so every client of a benchmark meets the same seeded faults.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import hmac
import io
import json
import random
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlencode, urlparse

from PIL import Image

API = "/api/v2"
ATTRIBUTIONS = [
    "Memorial Sloan Kettering Cancer Center",
    "Hospital Clínic de Barcelona",
    "ViDIR Group, Department of Dermatology, Medical University of Vienna",
    "Anonymous",
]
LICENSES = ["CC-BY-NC", "CC-0", "CC-BY"]
LICENSE_BODIES = {name: f"Fake ISIC license text for {name}.\nSecond line of {name}.\n" for name in LICENSES}
COLLECTION_NAMES = {70: "Challenge 2020: Training", 65: "Challenge 2019: Training", 212: "HAM10000"}
SITES = ["Head and neck", "Trunk", "Upper extremity", "Lower extremity", "Anogenital region"]
MALIGNANT = [
    ("Malignant melanocytic proliferations (Melanoma)", "Melanoma Invasive"),
    ("Malignant melanocytic proliferations (Melanoma)", "Melanoma in situ"),
    ("Malignant adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"),
    ("Malignant epidermal proliferations", "Squamous cell carcinoma in situ"),
]
BENIGN = [("Benign melanocytic proliferations", "Nevus"), ("Benign epidermal proliferations", "Seborrheic keratosis")]


# ---------------------------------------------------------------------------------------------------
# the data


@dataclass
class Dataset:
    records: list[dict]  # as the API sends them, with URLs relative to the server ("/s3/...")
    blobs: dict[str, bytes]  # URL path -> file bytes
    collections: dict[int, list[str]]  # collection id -> isic ids


def _image_bytes(rng: random.Random, width: int, height: int, fmt: str) -> bytes:
    # noise compresses badly, so the sizes stay close to what the dimensions suggest
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, "JPEG", quality=rng.choice([80, 85, 90]))
    return buffer.getvalue()


@functools.lru_cache(maxsize=8)
def make_dataset(n: int = 30, seed: int = 7, scale: float = 1.0) -> Dataset:
    """n images in creation order (ids ascending) with varied metadata; `scale` grows the pictures."""
    rng = random.Random(seed)
    records, blobs = [], {}
    collections: dict[int, list[str]] = {70: [], 65: [], 212: []}
    for i in range(n):
        isic_id = f"ISIC_{9000000 + i * 7:07d}"
        roll = rng.random()
        diagnosis_1 = "Benign" if roll < 0.55 else "Malignant" if roll < 0.85 else "Indeterminate" if roll < 0.93 else None
        clinical: dict = {
            "age_approx": rng.choice([None, 25, 30, 45, 50, 60, 70, 85]),
            "sex": rng.choice(["male", "female", "female", None]),
            "anatom_site_1": rng.choice(SITES + [None]),
            "patient_id": f"IP_{rng.randrange(10**7):07d}",
            "lesion_id": f"IL_{rng.randrange(10**7):07d}",
            "diagnosis_confirm_type": rng.choice(["histopathology", "serial imaging showing no change", None]),
        }
        if diagnosis_1:
            clinical["diagnosis_1"] = diagnosis_1
            pair = rng.choice(MALIGNANT if diagnosis_1 == "Malignant" else BENIGN)
            if diagnosis_1 != "Indeterminate":
                clinical["diagnosis_2"], clinical["diagnosis_3"] = pair
            clinical["melanocytic"] = "melanocytic" in pair[0]
        if rng.random() < 0.3:
            clinical["clin_size_long_diam_mm"] = rng.choice([2.5, 4.0, 6.3, "7.5"])
        if rng.random() < 0.2:
            clinical["fitzpatrick_skin_type"] = rng.choice(["I", "II", "III", "IV"])
        fmt = "PNG" if i % 5 == 3 else "JPEG"
        width = int(rng.randint(150, 330) * scale) if fmt == "JPEG" else int(rng.randint(50, 90) * scale)
        height = int(width * rng.choice([0.66, 0.75, 1.0]))
        acquisition: dict = {"pixels_x": width, "pixels_y": height, "image_type": "dermoscopic"}
        if rng.random() < 0.6:
            acquisition["dermoscopic_type"] = rng.choice(["contact polarized", "contact non-polarized"])
        ext = ".png" if fmt == "PNG" else ".jpg"
        full_path = f"/s3/images/{isic_id}{ext}"
        thumb_path = f"/s3/thumbnails/{isic_id}_thumbnail.jpg"
        blobs[full_path] = _image_bytes(rng, width, height, fmt)
        blobs[thumb_path] = _image_bytes(rng, 64, 48, "JPEG")
        record = {
            "isic_id": isic_id,
            "public": True,
            "copyright_license": LICENSES[i % 3],
            "attribution": ATTRIBUTIONS[i % len(ATTRIBUTIONS)],
            "files": {
                "full": {"url": full_path, "size": len(blobs[full_path])},
                "thumbnail_256": {"url": thumb_path, "size": len(blobs[thumb_path])},
            },
            "metadata": {
                # a field with no value is left out, never sent as null
                "acquisition": {k: v for k, v in acquisition.items() if v is not None},
                "clinical": {k: v for k, v in clinical.items() if v is not None},
            },
        }
        if i == n - 1 and n > 1:  # the last record lacks every optional field: no clinical metadata at all
            # (the archive still sends "clinical": {} and the pixel size: isic/core/api/image.py resolve_metadata)
            record["metadata"]["clinical"] = {}
            record["metadata"]["acquisition"] = {k: v for k, v in acquisition.items() if k in ("pixels_x", "pixels_y")}
        records.append(record)
        collections[70 if i % 3 else 65].append(isic_id)
        if i % 4 == 0:
            collections[212].append(isic_id)
    return Dataset(records, blobs, collections)


def flat(record: dict) -> dict:
    out = {k: record[k] for k in ("isic_id", "attribution", "copyright_license") if k in record}
    for section in ("acquisition", "clinical"):
        out.update(record["metadata"].get(section, {}))
    return out


# ---------------------------------------------------------------------------------------------------
# the query language (the part of it the archive documents)


class QueryError(ValueError):
    pass


TOKEN = re.compile(r'\s*(?:(\()|(\))|("[^"]*")|(\[[^\]]*\])|([^\s()"\[\]]+))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise QueryError(text)
        out.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_query(text: str) -> Callable[[dict], bool]:
    """Lucene-like: field:value, field:"a b", field:[a TO b], AND / OR / NOT / -, parentheses."""
    tokens = _tokens(text)
    if not tokens:
        return lambda row: True
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise QueryError("unexpected end")
        pos += 1
        return tokens[pos - 1]

    def parse_or():
        left = parse_and()
        while peek() == "OR":
            take()
            right = parse_and()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def parse_and():
        left = parse_unary()
        while peek() not in (None, ")", "OR"):
            if peek() == "AND":
                take()
            right = parse_unary()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def parse_unary():
        token = peek()
        if token in ("NOT", "-"):
            take()
            inner = parse_unary()
            return lambda row: not inner(row)
        if token and token.startswith("-") and len(token) > 1:
            tokens[pos] = token[1:]
            inner = parse_atom()
            return lambda row: not inner(row)
        return parse_atom()

    def parse_atom():
        token = take()
        if token == "(":
            inner = parse_or()
            if take() != ")":
                raise QueryError("missing )")
            return inner
        if token in (")", "AND", "OR") or ":" not in token:
            raise QueryError(token)
        field, _, value = token.partition(":")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", field):
            raise QueryError(field)
        if not value:
            value = take()
            if not (value.startswith('"') or value.startswith("[")):
                raise QueryError(value)
        return _term(field, value)

    predicate = parse_or()
    if pos != len(tokens):
        raise QueryError("trailing input")
    return predicate


def _term(field: str, value: str) -> Callable[[dict], bool]:
    if value.startswith("["):
        low, sep, high = value[1:-1].partition(" TO ")
        if not sep:
            raise QueryError(value)

        def in_range(row):
            try:
                number = float(row[field])
            except (KeyError, TypeError, ValueError):
                return False
            return (low.strip() == "*" or number >= float(low)) and (high.strip() == "*" or number <= float(high))

        return in_range
    value = value.strip('"')

    def equal(row):
        if field not in row:
            return False
        have = row[field]
        if value == "*":
            return True
        if isinstance(have, bool):
            return value.lower() == str(have).lower()
        if isinstance(have, (int, float)):
            try:
                return float(value) == float(have)
            except ValueError:
                return False
        return str(have) == value

    return equal


# ---------------------------------------------------------------------------------------------------
# the three shapes of file URL the archive has served (../shared/isic-api.md), on the stand-in's file host

SHAPES = ("cloudfront", "s3-virtual-hosted", "s3-path-style")
# FakeIsic(real_hosts=True): the names the archive answers under (../shared/isic-api.md), 443 for each,
# reached through real_host_names(); the default settings of a client then apply unchanged
REAL_API_HOST = "api.isic-archive.com"
REAL_FILE_HOSTS = {"cloudfront": "content.isic-archive.com",
                   "s3-virtual-hosted": "isic-archive.s3.us-east-1.amazonaws.com",
                   "s3-path-style": "s3.amazonaws.com"}
SIGNING_KEY = b"stand-in CloudFront key"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
WEEK = 7 * 24 * 3600.0


def shape_of(isic_id: str) -> str:
    """Records take the three shapes in turn, by their place in the archive's order."""
    return SHAPES[(int(isic_id[5:]) - 9000000) // 7 % 3]


def served_path(key: str, shape: str) -> str:
    """The URL path a file (by its key, /s3/images/<id>.<ext>) is served under in `shape`: CloudFront names
    it by a uuid (/<uuid>/<uuid>.jpg), the bucket by its key, path-style behind /isic-archive."""
    if shape == "cloudfront":
        digest = hashlib.sha256(key.encode()).hexdigest()
        uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        return f"/{uuid}/{uuid}{key[key.rindex('.'):]}"
    rest = key[len("/s3"):]
    return rest if shape == "s3-virtual-hosted" else "/isic-archive" + rest


def signature(path: str, expires: int) -> str:
    """CloudFront's signatures are base64 with -, _ and ~ for +, = and /; so are these."""
    raw = hmac.new(SIGNING_KEY, f"{path}:{expires}".encode(), hashlib.sha256).digest()
    return base64.b64encode(raw).decode().translate(str.maketrans("+=/", "-_~"))


# ---------------------------------------------------------------------------------------------------
# the server


@dataclass
class Fault:
    """Answer requests whose path contains `path` badly, `times` times per distinct path (None: always)."""

    path: str = ""
    status: int | None = None  # answer with this status and a JSON {"message": ...}
    retry_after: str | None = None  # Retry-After header value
    drop_after: int | None = None  # for files: send full headers, then this many body bytes, then close
    delay: float = 0.0  # sleep this long before answering
    times: int | None = 1
    message: str = "Injected fault."
    extra: int | None = None  # for files: this many junk bytes after the body (-1: until the client hangs up)
    no_length: bool = False  # for files: no Content-Length header (the body ends when the connection closes)
    endless_json: bool = False  # a JSON answer that never ends (with `status`: an error answer that never ends)
    trickle: float | None = None  # a 200 answer stating 1 MB, sent one byte every `trickle` s (TRICKLE_BYTES at most)
    redirect: str | None = None  # answer 302 with this Location


RESET_PATH = "/__reset__"
ENDLESS_LIMIT = 2 * 1024**3  # even an "endless" body stops here, so a broken client cannot hang the tests
TRICKLE_BYTES = 100  # a trickle ends here (30 s at 0.3 s a byte), then the connection closes


class FakeIsic:
    """The API on `host`, the files on `files_host` (another loopback address: a host the client must be told
    to allow, as the archive's hosts are allowed by default), in the three URL shapes in turn; CloudFront-
    shaped URLs are signed and expire (`sign_ttl`; `search_ttl` for those in search pages), and an expired
    or forged one is answered 403 as CloudFront does. `clock` shifts the server's time (days passing)."""

    def __init__(self, n: int = 30, seed: int = 7, scale: float = 1.0, host: str = "127.0.0.1", port: int = 0,
                 files_host: str | None = None, tls: bool = False, real_hosts: bool = False):
        assert host.startswith("127."), "loopback only"
        self.host = host
        self.real_hosts = real_hosts  # URLs on the archive's own host names (HTTPS): see real_host_names()
        self.tls = tls or real_hosts  # HTTPS on both hosts, with a certificate of its own (cert_file: give it to the client)
        self.cert_file: str | None = None
        self.port = port  # 0: any free port (isic-cli's --dev wants 8000)
        octets = host.split(".")
        self.files_host = files_host or ".".join([octets[0], octets[1], str((int(octets[2]) + 1) % 256), octets[3]])
        assert self.files_host.startswith("127.") and self.files_host != host
        self.sign_ttl = WEEK  # CloudFront URLs in images/<id>/ answers are valid this long
        self.search_ttl: float | None = None  # ... and in search pages (None: sign_ttl)
        self.clock = 0.0  # seconds added to the server's time
        self.epoch = int(time.time())  # URLs are signed relative to this, so one record is the same twice
        self.data = make_dataset(n, seed, scale)
        self.routes = {served_path(key, shape_of(key.rsplit("/", 1)[1][:12])): key for key in self.data.blobs}
        self.signed_paths = {path for path, key in self.routes.items() if shape_of(key.rsplit("/", 1)[1][:12]) == "cloudfront"}
        self.faults: list[Fault] = []
        self.range_support = True
        self.latency = 0.0  # seconds before every answer (one round trip per request)
        self.connect_latency = 0.0  # ... and before the first answer on a new connection (TCP and TLS handshakes)
        self.rate: float | None = None  # bytes per second for file bodies
        self.rate_step = 16 * 1024  # ... sent in pieces of this many bytes
        self.bad_cursor_page: int | None = None  # this page's `next` link carries a broken cursor
        self.record_hook: Callable[[dict], dict] | None = None  # rewrites each record sent (search and image)
        self.next_hook: Callable[[str | None, str], str | None] | None = None  # (next, this request's URL) -> next
        self.count_hook: Callable[[int], object] | None = None  # rewrites the first page's count
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._fault_hits: dict[tuple[int, str], int] = {}
        self.httpd: ThreadingHTTPServer | None = None
        self.files_httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "FakeIsic":
        handler = functools.partial(_Handler, self)
        context = self._tls_context() if self.tls else None
        self.httpd = _Server((self.host, self.port), handler)
        self.files_httpd = _Server((self.files_host, 0), handler)
        for httpd in (self.httpd, self.files_httpd):
            httpd.daemon_threads = True
            if context is not None:  # the handshake runs in the connection's own thread, not in accept()
                httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        threading.Thread(target=self.files_httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def _tls_context(self):
        """A server context with a fresh self-signed certificate for both loopback addresses (cert_file)."""
        import ssl
        import tempfile

        self._tls_dir = tempfile.TemporaryDirectory(prefix="fake-isic-tls-")
        names = [self.host, self.files_host] + ([REAL_API_HOST, *REAL_FILE_HOSTS.values()] if self.real_hosts else [])
        cert, key = self_signed_certificate(names, self._tls_dir.name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.cert_file = cert
        return context

    def stop(self) -> None:
        for httpd in (self.httpd, self.files_httpd):
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
        if getattr(self, "_tls_dir", None) is not None:
            self._tls_dir.cleanup()

    def __enter__(self) -> "FakeIsic":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def origin(self) -> str:
        if self.real_hosts:
            return f"https://{REAL_API_HOST}"
        return f"{self.scheme}://{self.host}:{self.httpd.server_address[1]}"

    def addresses(self) -> dict[tuple[str, int], tuple[str, int]]:
        """(host name, 443) -> where this server listens, for each real host name it answers under."""
        api = (self.host, self.httpd.server_address[1])
        files = (self.files_host, self.files_httpd.server_address[1])
        return {(REAL_API_HOST, 443): api, **{(name, 443): files for name in REAL_FILE_HOSTS.values()}}

    @property
    def api_url(self) -> str:
        return self.origin + API

    @property
    def files_origin(self) -> str:
        return f"{self.scheme}://{self.files_host}:{self.files_httpd.server_address[1]}"

    def now(self) -> float:
        return time.time() + self.clock

    def file_url(self, key: str, ttl: float | None = None) -> str:
        """The URL a record carries for the file `key`, in its record's shape, signed when CloudFront."""
        shape = shape_of(key.rsplit("/", 1)[1][:12])
        path = served_path(key, shape)
        url = (f"https://{REAL_FILE_HOSTS[shape]}" if self.real_hosts else self.files_origin) + path
        if shape == "cloudfront":
            expires = int(self.epoch + self.clock + (self.sign_ttl if ttl is None else ttl))
            url += "?" + urlencode({"Expires": expires, "Signature": signature(path, expires), "Key-Pair-Id": KEY_PAIR_ID})
        return url

    def key_of(self, record: dict, kind: str = "full") -> str:
        """The file's key (/s3/images/<id>.<ext>): what the log and faults name, whatever its URL's shape."""
        return self.routes[urlparse(record["files"][kind]["url"]).path]

    def signed_ok(self, path: str, query: dict) -> bool:
        try:
            expires = int(query["Expires"][0])
            given = query["Signature"][0]
            pair = query["Key-Pair-Id"][0]
        except (KeyError, ValueError, IndexError):
            return False
        return pair == KEY_PAIR_ID and hmac.compare_digest(given, signature(path, expires)) and expires > self.now()

    # -- what tests compare against

    @property
    def records(self) -> list[dict]:
        return [self.absolute(r) for r in self.data.records]

    def absolute(self, record: dict, ttl: float | None = None) -> dict:
        record = json.loads(json.dumps(record))
        for info in record["files"].values():
            info["url"] = self.file_url(info["url"], ttl)
        return record

    def matching(self, query: str = "", collections: tuple[int, ...] = ()) -> list[dict]:
        predicate = parse_query(query)
        allowed = None
        if collections:
            allowed = {i for c in collections for i in self.data.collections.get(int(c), [])}
        return [
            self.absolute(r)
            for r in self.data.records
            if (allowed is None or r["isic_id"] in allowed) and predicate(flat(r))
        ]

    def file_bytes(self, record: dict, kind: str = "full") -> bytes:
        return self.data.blobs[self.key_of(record, kind)]

    def requests_to(self, fragment: str) -> list[dict]:
        """Requests whose path (a file's key for files) or path as sent contains `fragment`."""
        with self._lock:
            return [entry for entry in self.log if fragment in entry["path"] or fragment in entry["raw_path"]]

    # -- faults

    def fault_for(self, path: str, raw_path: str = "") -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self.faults):
                if fault.path not in path and fault.path not in raw_path:
                    continue
                key = (index, path)
                hits = self._fault_hits.get(key, 0)
                if fault.times is not None and hits >= fault.times:
                    continue
                self._fault_hits[key] = hits + 1
                return fault
        return None

    def reset(self) -> None:
        """Forget the request log and which faults have fired, so the next client meets the same faults."""
        with self._lock:
            self.log.clear()
            self._fault_hits.clear()

    def record_request(self, entry: dict) -> None:
        with self._lock:
            self.log.append(entry)


@contextlib.contextmanager
def real_host_names(server: FakeIsic):
    """Within the block, a connection (urllib3's, so requests') to one of the archive's host names on 443
    reaches `server` instead: the stand-in for DNS a test of the default settings needs. Nothing else is
    redirected, and nothing is left patched after the block."""
    import urllib3.util.connection as connection

    table = server.addresses()
    original = connection.create_connection

    def create_connection(address, *args, **kwargs):
        return original(table.get((address[0], int(address[1])), address), *args, **kwargs)

    connection.create_connection = create_connection
    try:
        yield server
    finally:
        connection.create_connection = original


def self_signed_certificate(addresses: list[str], folder: str) -> tuple[str, str]:
    """cert.pem and key.pem in `folder`: a certificate for these IP addresses and host names, valid a day."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-isic")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([_alt_name(x509, ipaddress, a) for a in addresses]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            # what VERIFY_X509_STRICT (urllib3 on Python 3.13+) asks of a self-signed CA certificate
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


def _alt_name(x509, ipaddress, name: str):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # a client that hangs up mid-request (the point of several hostile tests) is not worth a traceback
        import ssl

        # ... nor is one that refuses the test certificate (ssl.SSLError) before its first request
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o={offset}&n={random.randrange(10**6)}".encode()).decode().rstrip("=")


def _offset(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        match = re.fullmatch(r"o=(\d+)&n=\d+", text)
    except (ValueError, UnicodeDecodeError):
        match = None
    if not match:
        raise ValueError(cursor)
    return int(match.group(1))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, server_state: FakeIsic, *args, **kwargs):
        self.state = server_state
        super().__init__(*args, **kwargs)

    def setup(self) -> None:
        super().setup()
        # small writes (one byte per connection, a trickled body) must leave at once, not wait for Nagle
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.state.connect_latency:  # a new connection: the TCP (and TLS) handshakes' round trips
            time.sleep(self.state.connect_latency)

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        if url.path == RESET_PATH:  # the benchmark, between two clients (no latency, not logged)
            self.state.reset()
            return self._send({}, 200, b"reset\n", "text/plain")
        key = self.state.routes.get(url.path)  # a file, by its key, whichever shape asked for it
        entry = {"path": key or url.path, "raw_path": url.path, "raw_query": url.query,
                 "host": self.headers.get("Host"), "query": parse_qs(url.query), "range": self.headers.get("Range"),
                 "status": None, "sent": 0, "time": time.monotonic(),
                 "client": self.client_address,  # one per connection: keep-alive shows as repeats
                 "nodelay": bool(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))}
        self.state.record_request(entry)  # logged on arrival; status and bytes are filled in as it goes
        try:
            if self.state.latency:
                time.sleep(self.state.latency)
            fault = self.state.fault_for(key or url.path, url.path)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.redirect:
                self._send(entry, 302, b"", "text/plain", {"Location": fault.redirect})
            elif fault is not None and fault.endless_json:
                self._endless_json(entry, fault.status or 200)
            elif fault is not None and fault.trickle:
                self._trickle(entry, fault.trickle)
            elif fault is not None and fault.status:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                self._json(entry, fault.status, {"message": fault.message}, headers)
            elif url.path in self.state.signed_paths and not self.state.signed_ok(url.path, parse_qs(url.query)):
                self._send(entry, 403, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                           b"<Message>Access denied</Message></Error>", "text/xml")
            elif key is not None:
                self._file(entry, key, fault)
            elif url.path.startswith("/s3/"):
                self._file(entry, url.path, fault)
            else:
                self._api(entry, url.path, parse_qs(url.query))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    # -- API

    def _api(self, entry: dict, path: str, query: dict) -> None:
        if not path.startswith(API + "/"):
            return self._json(entry, 404, {"message": "Not found."})
        route = path[len(API):]
        if route == "/images/search/":
            return self._search(entry, query)
        if route == "/images/search/size/":
            try:
                rows = self._select(query)
            except QueryError:
                return self._json(entry, 400, {"message": "Could not parse search query."})
            return self._json(entry, 200, {"size": sum(r["files"]["full"]["size"] for r in rows)})
        match = re.fullmatch(r"/images/([A-Za-z0-9_]+)/", route)
        if match:
            for record in self.state.data.records:
                if record["isic_id"] == match.group(1):
                    return self._json(entry, 200, self._hooked(self.state.absolute(record, self.state.sign_ttl)))
            return self._json(entry, 404, {"message": "Not found."})
        match = re.fullmatch(r"/collections/(\d+)/", route)  # isic-cli checks each -c id here first
        if match:
            cid = int(match.group(1))
            if cid not in self.state.data.collections:
                return self._json(entry, 404, {"message": "Not found."})
            # CollectionOut (isic/core/api/collection.py): the model's fields and the DOI, if any
            return self._json(entry, 200, {"id": cid, "name": COLLECTION_NAMES.get(cid, f"Collection {cid}"),
                                           "description": "", "public": True, "pinned": cid in COLLECTION_NAMES,
                                           "locked": True, "doi": None, "doi_url": None})
        match = re.fullmatch(r"/zip-download/license-file/([A-Za-z0-9-]+)/", route)
        if match and match.group(1) in LICENSE_BODIES:
            return self._send(entry, 200, LICENSE_BODIES[match.group(1)].encode(), "text/plain; charset=utf-8")
        return self._json(entry, 404, {"message": "Not found."})

    def _select(self, query: dict) -> list[dict]:
        text = query.get("query", [""])[0]
        collections = tuple(int(c) for c in query.get("collections", [""])[0].split(",") if c.strip())
        predicate = parse_query(text)
        allowed = None
        if collections:
            allowed = {i for c in collections for i in self.state.data.collections.get(c, [])}
        return [r for r in self.state.data.records if (allowed is None or r["isic_id"] in allowed) and predicate(flat(r))]

    def _search(self, entry: dict, query: dict) -> None:
        try:
            rows = self._select(query)
        except QueryError:
            return self._json(entry, 400, {"message": "Could not parse search query."})
        limit = int(query.get("limit", ["0"])[0] or 0)
        limit = 100 if limit <= 0 else min(limit, 100)
        cursor = query.get("cursor", [None])[0]
        if cursor is None:
            offset, page = 0, 1
        else:
            try:
                offset = _offset(cursor)
            except ValueError:
                return self._json(entry, 422, {"message": "Invalid cursor."})
            page = offset // limit + 1
        chunk = rows[offset: offset + limit]
        following = None
        if offset + limit < len(rows):
            params = {k: v[0] for k, v in query.items() if k != "cursor"}
            token = "not-a-valid-cursor!" if self.state.bad_cursor_page == page else _cursor(offset + limit)
            params["cursor"] = token
            following = f"{self.state.api_url}/images/search/?{urlencode(params)}"
        count = len(rows) if cursor is None else None
        if cursor is None and self.state.count_hook is not None:
            count = self.state.count_hook(count)
        if self.state.next_hook is not None:
            following = self.state.next_hook(following, self.state.origin + self.path)
        body = {
            "count": count,
            "next": following,
            "previous": None,
            "results": [self._hooked(self.state.absolute(r, self.state.search_ttl)) for r in chunk],
        }
        self._json(entry, 200, body)

    def _hooked(self, record: dict) -> dict:
        return self.state.record_hook(record) if self.state.record_hook is not None else record

    def _endless_json(self, entry: dict, status: int = 200) -> None:
        """A JSON answer without Content-Length that streams results until the client hangs up."""
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        item = json.dumps(self.state.absolute(self.state.data.records[0])).encode() + b","
        self.wfile.write(b'{"count": 1, "next": null, "results": [')
        while entry["sent"] < ENDLESS_LIMIT:
            self.wfile.write(item * 64)
            entry["sent"] += len(item) * 64

    def _trickle(self, entry: dict, interval: float) -> None:
        """A 200 answer stating 1 MB that sends one byte every `interval` s, TRICKLE_BYTES at most."""
        entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(1024**2))
        self.end_headers()
        self.close_connection = True
        self.wfile.flush()
        while entry["sent"] < TRICKLE_BYTES:
            self.wfile.write(b" ")
            self.wfile.flush()
            entry["sent"] += 1
            time.sleep(interval)

    # -- files

    def _file(self, entry: dict, path: str, fault: Fault | None) -> None:
        blob = self.state.data.blobs.get(path)
        if blob is None:
            return self._send(entry, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        total = len(blob)
        start, status, headers = 0, 200, {"Accept-Ranges": "bytes"} if self.state.range_support else {}
        wanted = self.headers.get("Range")
        if wanted and self.state.range_support:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if match:
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else total - 1
                if start >= total:
                    headers["Content-Range"] = f"bytes */{total}"
                    return self._send(entry, 416, b"", "text/plain", headers)
                blob = blob[start: min(end, total - 1) + 1]
                status = 206
                headers["Content-Range"] = f"bytes {start}-{start + len(blob) - 1}/{total}"
        limit = fault.drop_after if fault is not None and fault.drop_after is not None else None
        if fault is not None and (fault.extra is not None or fault.no_length):
            return self._overlong(entry, status, blob, headers, fault)
        self._send(entry, status, blob, "image/png" if path.endswith(".png") else "image/jpeg", headers,
                   cut=limit, rate=self.state.rate)

    def _overlong(self, entry: dict, status: int, blob: bytes, headers: dict, fault: Fault) -> None:
        """The file, then `fault.extra` junk bytes (-1: until the client hangs up); Content-Length states the
        file's own size unless `no_length`, in which case the connection is closed at the end."""
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg")
        if not fault.no_length:
            self.send_header("Content-Length", str(len(blob)))
        else:
            self.send_header("Connection", "close")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        self.wfile.write(blob)
        entry["sent"] = len(blob)
        extra = 0 if fault.extra is None else ENDLESS_LIMIT if fault.extra < 0 else fault.extra
        junk = b"\0" * (64 * 1024)
        while extra > 0:
            piece = junk[: min(len(junk), extra)]
            self.wfile.write(piece)
            entry["sent"] += len(piece)
            extra -= len(piece)

    # -- sending

    def _json(self, entry: dict, status: int, body, headers: dict | None = None) -> None:
        self._send(entry, status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, entry, status, payload: bytes, content_type: str, headers: dict | None = None,
              cut: int | None = None, rate: float | None = None) -> None:
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))  # the full length, even when cutting short
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        body = payload if cut is None else payload[:cut]
        if rate:
            step = self.state.rate_step
            for i in range(0, len(body), step):
                self.wfile.write(body[i: i + step])
                self.wfile.flush()
                entry["sent"] += len(body[i: i + step])
                time.sleep(len(body[i: i + step]) / rate)
        else:
            self.wfile.write(body)
            entry["sent"] = len(body)
        if cut is not None and cut < len(payload):
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def images_in(folder) -> list:
    """The finished images of a download folder (isic-cli's flat layout: <isic_id>.<ext> beside metadata.csv),
    sorted; hidden .part files and the small files left out. [] for a folder that does not exist."""
    from pathlib import Path

    from skinlesion.raw_layout import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def client_config(server: FakeIsic, **overrides) -> dict:
    """A data.isic-shaped config pointing at `server`, with fast retries for tests."""
    cfg = {"api_url": server.api_url, "allowed_hosts": [server.files_host], "workers": 4, "retries": 3, "backoff": 0.01, "max_backoff": 0.05,
           "connect_timeout": 2.0, "read_timeout": 5.0}
    cfg.update(overrides)
    return cfg


def client_options(server: FakeIsic, **overrides):
    """The client's parsed options for `server` (environment ignored, so ISIC_API_URL cannot leak in)."""
    from skinlesion.sources.isic.options import from_config

    return from_config(client_config(server, **overrides), env={})


def seeded_faults(data: Dataset, seed: int, share: float = 0.15) -> list[Fault]:
    """Faults the benchmark injects, the same for every client given the seed: the first answer of the first
    search page is a 503, and of the full files a share (a third each) first answers 429 with Retry-After: 1,
    503 with Retry-After: 1, or a body cut at half its length; every file's second request succeeds."""
    rng = random.Random(seed)
    faults = [Fault("/images/search/", status=503, retry_after="1", times=1)]
    for record in data.records:
        roll = rng.random()
        path = record["files"]["full"]["url"]
        if roll < share / 3:
            faults.append(Fault(path, status=429, retry_after="1", times=1, message="Too many requests."))
        elif roll < 2 * share / 3:
            faults.append(Fault(path, status=503, retry_after="1", times=1))
        elif roll < share:
            faults.append(Fault(path, drop_after=len(data.blobs[path]) // 2, times=1))
    return faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="grow the pictures (and file sizes)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--connect-latency", type=float, default=0.0,
                        help="seconds more before the first answer on a new connection (its handshakes)")
    parser.add_argument("--tls", action="store_true",
                        help="HTTPS with a self-signed certificate; its path is printed on the second line")
    parser.add_argument("--rate", type=float, default=None, help="bytes/s per file body")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument("--faults", type=int, default=None, metavar="SEED",
                        help="inject the benchmark's faults (seeded_faults), chosen by SEED")
    args = parser.parse_args(argv)
    server = FakeIsic(args.images, args.seed, args.scale, port=args.port, tls=args.tls)
    server.latency, server.connect_latency, server.rate = args.latency, args.connect_latency, args.rate
    if args.faults is not None:
        server.faults.extend(seeded_faults(server.data, args.faults))
    server.start()
    print(server.api_url, flush=True)
    if server.cert_file:
        print(server.cert_file, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
