"""Benchmark: `skinlesion download` against isic-cli itself and a plain sequential loop, on one local archive.

Starts tests/isic_server.py in its own process on 127.0.0.1:8000 (isic-cli's --dev address) with N images,
a fixed latency before every answer (the round trip to the archive and S3) and, with --faults, the same
seeded faults for every client (the first search answer a 503; of the files about 5 % a 429 with
Retry-After: 1, 5 % a 503 with Retry-After: 1 and 5 % a body cut at half, each once). Then, in the same run,
each repeat times three whole processes, one after another, against the same server (reset in between):

  isic-cli    `isic --dev --guest --no-version-check image download OUT` from isic-cli's own virtual
              environment (--isic-cli-venv; created with pip from the package index when missing)
  ours        `python -m skinlesion.cli download --out OUT --api-url ...` (paging, metadata.csv, licenses,
              parallel workers, .part + size check + fsync + rename, retries)
  sequential  a plain loop in a process of its own: follow the search pages, GET each file, write it
              (retrying a failed file after Retry-After or 1 s, so that it survives --faults)

Every arm must produce every image, byte-identical across arms (checked by SHA-256), and the three license
files. Prints the median seconds of --repeats runs per arm and the ratio ours / isic-cli.

    .venv/bin/python benchmarks/isic_download.py --images 300 --latency 0.05 --repeats 3 [--faults]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
PORT = 8000  # isic-cli --dev talks to http://127.0.0.1:8000 and nothing else
DEFAULT_VENV = ROOT / ".venv-isic-cli"
FAULT_SEED = 12


def start_server(images: int, latency: float, scale: float, faults: bool) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, str(ROOT / "tests" / "isic_server.py"), "--images", str(images),
               "--latency", str(latency), "--scale", str(scale), "--port", str(PORT)]
    if faults:
        command += ["--faults", str(FAULT_SEED)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the test server did not start on port {PORT} (is the port taken?): {url!r}")
    return proc, url


def isic_cli(venv: Path) -> Path:
    """isic-cli's `isic` in its own virtual environment, created from the package index when missing."""
    exe = venv / "bin" / "isic"
    if not exe.exists():
        print(f"installing isic-cli into {venv} (python -m venv, then pip install isic-cli) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "isic-cli"], check=True)
    return exe


def arm_commands(api_url: str, isic: Path, out: Path, workers: int | None) -> dict[str, list[str]]:
    # the stand-in serves its files from a second loopback host (127.0.1.1 beside 127.0.0.1), allowed by hand
    ours = [sys.executable, "-m", "skinlesion.cli", "download", "--out", str(out / "ours"), "--api-url", api_url,
            "--allowed-hosts", "127.0.1.1"]
    if workers:
        ours += ["--workers", str(workers)]
    return {
        "isic-cli": [str(isic), "--dev", "--guest", "--no-version-check", "image", "download", str(out / "isic-cli")],
        "ours": ours,
        "sequential": [sys.executable, str(Path(__file__).resolve()), "--sequential-arm", api_url, str(out / "sequential")],
    }


def images_of(folder: Path) -> Path:
    return folder / "images" if (folder / "images").is_dir() else folder  # isic-cli writes them at the top


def digests(folder: Path) -> dict[str, str]:
    files = [p for p in images_of(folder).iterdir() if p.suffix in (".jpg", ".png") and not p.name.startswith(".")]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_arm(name: str, command: list[str], folder: Path, api_url: str) -> float:
    import requests

    requests.get(urlparse(api_url)._replace(path="/__reset__").geturl(), timeout=10).raise_for_status()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    log = folder.parent / f"{name}.log"
    started = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}):\n{log.read_text()[-3000:]}")
    return seconds


def sequential(api_url: str, out: Path) -> None:
    """The plain loop: one session, pages first, then every file in turn (a failed file tried again)."""
    import requests

    images = out / "images"
    images.mkdir(parents=True)
    session = requests.Session()

    def get(url, **kwargs):
        for _ in range(10):
            wait = 1.0
            try:
                response = session.get(url, timeout=30, **kwargs)  # reads the body: a cut one raises here
                if response.status_code == 200:
                    return response
                wait = float(response.headers.get("Retry-After") or 1)
            except requests.RequestException:
                pass
            time.sleep(wait)
        raise SystemExit(f"gave up on {url}")

    records, url, params = [], f"{api_url}/images/search/", {"limit": 100}
    while url:
        page = get(url, params=params).json()
        records += page["results"]
        url, params = page["next"], None
    for record in records:
        file_url = record["files"]["full"]["url"]
        (images / (record["isic_id"] + Path(urlparse(file_url).path).suffix)).write_bytes(get(file_url).content)
    for name in {r["copyright_license"] for r in records}:
        (out / "licenses").mkdir(exist_ok=True)
        (out / "licenses" / f"{name}.txt").write_bytes(get(f"{api_url}/zip-download/license-file/{name}/").content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before every server answer")
    parser.add_argument("--faults", action="store_true", help=f"inject the seeded faults (seed {FAULT_SEED})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per arm; the median is reported")
    parser.add_argument("--scale", type=float, default=2.0, help="picture size factor (2.0: about 130 KB a file)")
    parser.add_argument("--workers", type=int, default=None, help="ours: --workers (default: ours' default)")
    parser.add_argument("--sequential-runs", type=int, default=None,
                        help="run the (slow) sequential arm only in the first K repeats (default: every repeat)")
    parser.add_argument("--arms", default="isic-cli,ours,sequential", help="which arms, comma-separated")
    parser.add_argument("--isic-cli-venv", type=Path, default=Path(os.environ.get("ISIC_CLI_VENV", DEFAULT_VENV)),
                        help=f"isic-cli's own virtual environment (default {DEFAULT_VENV}; ISIC_CLI_VENV)")
    parser.add_argument("--sequential-arm", nargs=2, metavar=("API_URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sequential_arm:
        sequential(args.sequential_arm[0], Path(args.sequential_arm[1]))
        return 0

    arms = args.arms.split(",")
    isic = isic_cli(args.isic_cli_venv) if "isic-cli" in arms else Path("isic")
    proc, api_url = start_server(args.images, args.latency, args.scale, args.faults)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    reference: dict[str, str] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                order = arms[repeat % len(arms):] + arms[: repeat % len(arms)]  # no arm always goes first
                for arm in order:
                    if arm == "sequential" and args.sequential_runs is not None and repeat >= args.sequential_runs:
                        continue
                    out = Path(tmp) / f"run{repeat}"
                    out.mkdir(exist_ok=True)
                    command = arm_commands(api_url, isic, out, args.workers)[arm]
                    times[arm].append(run_arm(arm, command, out / arm, api_url))
                    got = digests(out / arm)
                    if len(got) != args.images:
                        raise SystemExit(f"{arm} wrote {len(got)} images, not {args.images}")
                    if reference is None:
                        reference = got
                    elif got != reference:
                        differ = sorted(k for k in got.keys() | reference.keys() if got.get(k) != reference.get(k))
                        raise SystemExit(f"{arm}'s images differ from the first arm's: {differ[:5]}")
                    licenses = sorted(p.name for p in (out / arm / "licenses").glob("*.txt"))
                    if licenses != ["CC-0.txt", "CC-BY-NC.txt", "CC-BY.txt"]:
                        raise SystemExit(f"{arm} wrote licenses {licenses}")
                    shutil.rmtree(out / arm)
    finally:
        proc.terminate()
        proc.wait()

    faults = "with seeded faults" if args.faults else "fault-free"
    print(f"{args.images} images, {args.latency * 1000:.0f} ms latency per request, {faults}, "
          f"median of {args.repeats}; every image byte-identical across arms")
    print(f"{'client':<12}{'median s':>10}  runs")
    for arm in arms:
        runs = " ".join(f"{t:.2f}" for t in times[arm])
        print(f"{arm:<12}{statistics.median(times[arm]):>10.2f}  {runs}")
    if "ours" in arms and "isic-cli" in arms:
        ratio = statistics.median(times["ours"]) / statistics.median(times["isic-cli"])
        print(f"ours / isic-cli: {ratio:.2f}x")
    if "ours" in arms and "sequential" in arms:
        print(f"ours / sequential: {statistics.median(times['ours']) / statistics.median(times['sequential']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
