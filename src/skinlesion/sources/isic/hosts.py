"""Where file URLs may point, which of them carry a signature, and how a URL is shown without its secrets.

The archive has served its files in three shapes (../shared/isic-api.md): CloudFront-signed URLs on
content.isic-archive.com (`?Expires=..&Signature=..&Key-Pair-Id=..`), and its S3 bucket `isic-archive`
through any endpoint S3 has for it: virtual-hosted (`isic-archive.s3.amazonaws.com`,
`isic-archive.s3.us-east-1.amazonaws.com`, the older `isic-archive.s3-us-east-1.amazonaws.com`, dual-stack)
or path-style (`s3.amazonaws.com/isic-archive/...`, `s3.<region>.amazonaws.com/isic-archive/...`). All of
those are allowed by default, and so is the API's own host; data.isic.allowed_hosts adds more. A path-style
URL is allowed only for the archive's own bucket: any S3 bucket answers on s3.amazonaws.com.

File URLs must be https, unless the API itself is http (a local stand-in): a signed query is a credential.
It is sent as given, never rewritten, and never shown in full: `redact` and `scrub` replace the values of
the signing parameters in anything written to a log or an error.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import urlparse

SETTING = "data.isic.allowed_hosts"
CLOUDFRONT_HOST = "content.isic-archive.com"
BUCKET = "isic-archive"
_REGION = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}"
# the bucket's virtual-hosted endpoints: global, regional (dot or legacy dash), dual-stack
_VIRTUAL = re.compile(rf"{BUCKET}\.s3(?:[.-]{_REGION}|\.dualstack\.{_REGION})?\.amazonaws\.com")
# S3's own endpoints, on which a path-style URL names the bucket as its first path segment
_PATH_STYLE = re.compile(rf"s3(?:[.-]{_REGION}|\.dualstack\.{_REGION})?\.amazonaws\.com")

# query parameters that sign a URL: CloudFront (Expires, Signature, Key-Pair-Id, Policy), S3 SigV4 (X-Amz-*),
# S3 SigV2 (AWSAccessKeyId, Signature, Expires)
SIGNING = ("signature", "key-pair-id", "policy", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
           "awsaccesskeyid")
SIGNED_MARKS = ("signature", "x-amz-signature")
_SECRET = re.compile(r"(?i)\b(" + "|".join(re.escape(k) for k in SIGNING) + r")=([^&\s'\"<>]*)")
REDACTED = "[redacted]"


def is_default_host(host: str, path: str) -> bool:
    """True for the archive's CloudFront domain and its bucket on any S3 endpoint (path-style: its bucket only)."""
    host = host.lower().rstrip(".")
    if host == CLOUDFRONT_HOST or _VIRTUAL.fullmatch(host):
        return True
    if _PATH_STYLE.fullmatch(host):
        segments = path.split("/")
        # a dot segment (also %2e-encoded) would be resolved away by the HTTP library: /isic-archive/../other/
        if any(seg.lower().replace("%2e", ".") in (".", "..") for seg in segments):
            return False
        return len(segments) > 2 and segments[0] == "" and segments[1] == BUCKET
    return False


def url_problem(url, api_url: str) -> str | None:
    """Why a file URL is refused as such (None when it is fine): not absolute, not http(s), http while the
    API is https. The host is checked by `host_problem`."""
    if not isinstance(url, str) or not url:
        return "no file URL"
    try:
        parts = urlparse(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return "unreadable file URL"
    if parts.scheme not in ("http", "https"):
        return f"unsupported URL scheme {parts.scheme[:20]!r} (http/https only)" if parts.scheme else "file URL not absolute"
    if not host:
        return "file URL not absolute"
    if parts.scheme == "http" and urlparse(api_url).scheme != "http":
        return "file URL not https (http only where the API itself is http)"
    return None


def host_problem(url: str, api_url: str, extra_hosts: Iterable[str] = ()) -> str | None:
    """None when the (already well-formed) URL's host is allowed; else the refused host's name."""
    parts = urlparse(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if host == (urlparse(api_url).hostname or "").lower().rstrip("."):
        return None
    if is_default_host(host, parts.path) or host in set(extra_hosts):
        return None
    return host


def refused_host_message(host: str, where: str) -> str:
    return (f"file host {host[:100]!r} is not allowed ({where}): the archive's own hosts "
            f"({CLOUDFRONT_HOST}, the {BUCKET} bucket on S3) and the API's are allowed by default; if you trust "
            f"this one, add it to {SETTING} in params.yaml (skinlesion download: --allowed-hosts {host[:100]}).")


def is_signed(url: str) -> bool:
    """Whether the URL carries a signed query (CloudFront or S3 presigned): it may expire."""
    try:
        query = urlparse(url).query
    except ValueError:
        return False
    names = {part.split("=", 1)[0].lower() for part in query.split("&") if part}
    return any(mark in names for mark in SIGNED_MARKS)


def scrub(text: str) -> str:
    """`text` with the value of every signing parameter (Signature=, Key-Pair-Id=, X-Amz-Credential=, ...)
    replaced by [redacted], wherever it appears (a URL, an exception's words)."""
    return _SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def redact(url: str) -> str:
    """A URL fit for a log line or an error: its signing values redacted, the rest kept (Expires too)."""
    return scrub(str(url))
