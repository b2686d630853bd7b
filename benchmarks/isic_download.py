"""Benchmark: our ISIC client against a plain sequential requests loop, on the local ISIC look-alike.

Starts tests/isic_server.py in its own process (N images, a fixed latency before every answer to stand
in for the round trip to the archive and S3), then in the same run downloads the same selection twice:

  ours        skinlesion.sources.isic.download.download (paging, metadata.csv, licenses, parallel workers,
              temp file + rename, size checks)
  sequential  a plain loop: follow images/search/ pages with one requests.Session, then GET each file
              and write it (no checks, no retries)

and reports images/s and MB/s for both and the ratio. Both outputs are compared byte for byte.

    .venv/bin/python benchmarks/isic_download.py --images 200 --latency 0.05 --workers 8
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import requests

ROOT = Path(__file__).resolve().parents[1]


def start_server(images: int, latency: float, scale: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "isic_server.py"), "--images", str(images),
         "--latency", str(latency), "--scale", str(scale)],
        stdout=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the test server did not start: {url!r}")
    return proc, url


def ours(api_url: str, out: Path, workers: int) -> tuple[int, int]:
    from skinlesion.sources.isic.download import download
    from skinlesion.sources.isic.options import from_config

    outcome = download(from_config({"api_url": api_url, "workers": workers}, env={}), out, progress=False)
    return len(outcome.report.results), outcome.report.received


def sequential(api_url: str, out: Path) -> tuple[int, int]:
    images = out / "images"
    images.mkdir(parents=True)
    session = requests.Session()
    records, url, params = [], f"{api_url}/images/search/", {"limit": 100}
    while url:
        page = session.get(url, params=params, timeout=30).json()
        records += page["results"]
        url, params = page["next"], None
    total = 0
    for record in records:
        file_url = record["files"]["full"]["url"]
        response = session.get(file_url, timeout=30)
        response.raise_for_status()
        (images / (record["isic_id"] + Path(urlparse(file_url).path).suffix)).write_bytes(response.content)
        total += len(response.content)
    return len(records), total


def timed(fn, *args) -> tuple[int, int, float]:
    started = time.perf_counter()
    n, nbytes = fn(*args)
    return n, nbytes, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before every server answer")
    parser.add_argument("--scale", type=float, default=2.0, help="picture size factor (2.0: about 110 KB a file)")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    proc, api_url = start_server(args.images, args.latency, args.scale)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            a = timed(ours, api_url, Path(tmp) / "ours", args.workers)
            b = timed(sequential, api_url, Path(tmp) / "sequential")
            for path in sorted((Path(tmp) / "sequential" / "images").iterdir()):
                if path.read_bytes() != (Path(tmp) / "ours" / "images" / path.name).read_bytes():
                    raise SystemExit(f"outputs differ: {path.name}")
    finally:
        proc.terminate()
        proc.wait()

    print(f"{args.images} images, {a[1] / 1e6:.1f} MB, {args.latency * 1000:.0f} ms latency per request, "
          f"{args.workers} workers; outputs identical")
    print(f"{'client':<12}{'seconds':>9}{'images/s':>10}{'MB/s':>8}")
    for name, (n, nbytes, seconds) in (("ours", a), ("sequential", b)):
        print(f"{name:<12}{seconds:>9.2f}{n / seconds:>10.1f}{nbytes / seconds / 1e6:>8.2f}")
    print(f"speed-up (ours / sequential): {b[2] / a[2]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
