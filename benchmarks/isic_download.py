"""Benchmark: `skinlesion download` against the pinned isic-cli and a plain sequential loop, as the archive is reached.

Starts tests/isic_server.py in its own process with N images, over HTTPS (a certificate of its own, given to
every client as REQUESTS_CA_BUNDLE), the API on 127.0.0.1 and the files on 127.0.1.1 in the archive's three
URL shapes, and a round trip imitated in the server (this kernel has no netem): one round trip before every
answer (the request) and two more before the first answer on a new connection (the TCP and TLS
handshakes). With --faults the same seeded faults meet every client (the first search answer a 503; of the
files about 5 % a 429 with Retry-After: 1, 5 % a 503 with Retry-After: 1 and 5 % a body cut at half, each
once). Then, in the same run, each repeat times three whole processes, one after another, against that
server (its fault memory reset in between), the order rotating from repeat to repeat:

  isic-cli    isic-cli 12.4.0 (pinned in the test extra; refused otherwise), its own code unchanged, run as
              `isic --dev --guest --no-version-check image download OUT` with --dev's address set to the
              server (isic_cli.cli.DOMAINS["dev"], as tests/test_isic_cli_real.py does). It downloads with
              max(10, cpu count) threads, a new session (connection) per file.
  ours        `python -m skinlesion.cli download OUT --api-url ... --workers W` with W = isic-cli's thread
              count unless --workers says otherwise: the same number of parallel downloads on both sides.
  sequential  a plain loop in a process of its own: follow the search pages, GET each file, write it
              (retrying a failed file after Retry-After or 1 s, so that it survives --faults)

Every arm must produce every image, byte-identical across arms (SHA-256), and the three license files.
Prints the median seconds per arm and isic-cli's time over ours (the throughput ratio); --json FILE adds
this cell's raw timings to FILE (one entry per images/round trip/faults/workers, replaced when rerun), and
--report FILE prints the Markdown table of every cell in FILE (benchmarks/isic_download.md shows it,
through workflow/scripts/doc-figures.py).

    .venv/bin/python benchmarks/isic_download.py --images 300 --rtt 0.05 --repeats 3 --json benchmarks/isic_download.json
    .venv/bin/python benchmarks/isic_download.py --report benchmarks/isic_download.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
ISIC_CLI_VERSION = "12.4.0"
FAULT_SEED = 12
CONNECT_RTTS = 2  # round trips before the first answer on a new connection: TCP, then TLS 1.3
# isic-cli's own entry point with its --dev address pointed at the benchmark's server
ISIC_CLI = "import sys, isic_cli.cli as cli; cli.DOMAINS['dev'] = sys.argv.pop(1); cli.main()"
LICENSES = ["CC-0.txt", "CC-BY-NC.txt", "CC-BY.txt"]


def isic_cli_threads() -> int:
    return max(10, os.cpu_count() or 10)  # isic_cli/cli/image.py: ThreadPoolExecutor(max(10, os.cpu_count() or 10))


def start_server(images: int, rtt: float, scale: float, faults: bool) -> tuple[subprocess.Popen, str, str]:
    command = [sys.executable, str(ROOT / "tests" / "isic_server.py"), "--images", str(images), "--tls",
               "--latency", str(rtt), "--connect-latency", str(CONNECT_RTTS * rtt), "--scale", str(scale)]
    if faults:
        command += ["--faults", str(FAULT_SEED)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url, cert = proc.stdout.readline().strip(), proc.stdout.readline().strip()
    if not url.startswith("https://") or not Path(cert).is_file():
        proc.kill()
        raise SystemExit(f"the test server did not start: {url!r} {cert!r}")
    return proc, url, cert


def check_isic_cli(python: str) -> str:
    code = "import importlib.metadata as m; print(m.version('isic-cli'))"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    version = proc.stdout.strip()
    if proc.returncode or version != ISIC_CLI_VERSION:
        raise SystemExit(f"isic-cli {ISIC_CLI_VERSION} is needed in {python} (found {version or 'none'}): "
                         f"pip install -e '.[test]' (it pins isic-cli=={ISIC_CLI_VERSION})")
    return version


def arm_commands(api_url: str, out: Path, workers: int) -> dict[str, list[str]]:
    origin = urlparse(api_url)._replace(path="").geturl()
    return {
        "isic-cli": [sys.executable, "-c", ISIC_CLI, origin, "--dev", "--guest", "--no-version-check", "image",
                     "download", str(out / "isic-cli")],
        # the stand-in's file host is a second loopback address, allowed by hand (the archive's are by default)
        "ours": [sys.executable, "-m", "skinlesion.cli", "download", str(out / "ours"), "--api-url", api_url,
                 "--allowed-hosts", "127.0.1.1", "--workers", str(workers)],
        "sequential": [sys.executable, str(Path(__file__).resolve()), "--sequential-arm", api_url,
                       str(out / "sequential")],
    }


def digests(folder: Path) -> dict[str, str]:
    files = [p for p in folder.iterdir() if p.suffix in (".jpg", ".png") and not p.name.startswith(".")]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_arm(name: str, command: list[str], folder: Path, api_url: str, env: dict) -> float:
    import requests

    reset = urlparse(api_url)._replace(path="/__reset__").geturl()
    requests.get(reset, timeout=10, verify=env["REQUESTS_CA_BUNDLE"]).raise_for_status()
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

    out.mkdir(parents=True)
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
        (out / (record["isic_id"] + Path(urlparse(file_url).path).suffix)).write_bytes(get(file_url).content)
    for name in {r["copyright_license"] for r in records}:
        (out / "licenses").mkdir(exist_ok=True)
        (out / "licenses" / f"{name}.txt").write_bytes(get(f"{api_url}/zip-download/license-file/{name}/").content)


def measure(args, arms: list[str], workers: int) -> dict[str, list[float]]:
    proc, api_url, cert = start_server(args.images, args.rtt, args.scale, args.faults)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": cert,
           "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("ISIC_API_URL", None)
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
                    command = arm_commands(api_url, out, workers)[arm]
                    times[arm].append(round(run_arm(arm, command, out / arm, api_url, env), 3))
                    got = digests(out / arm)
                    if len(got) != args.images:
                        raise SystemExit(f"{arm} wrote {len(got)} images, not {args.images}")
                    if reference is None:
                        reference = got
                    elif got != reference:
                        differ = sorted(k for k in got.keys() | reference.keys() if got.get(k) != reference.get(k))
                        raise SystemExit(f"{arm}'s images differ from the first arm's: {differ[:5]}")
                    licenses = sorted(p.name for p in (out / arm / "licenses").glob("*.txt"))
                    if licenses != LICENSES:
                        raise SystemExit(f"{arm} wrote licenses {licenses}")
                    shutil.rmtree(out / arm)
    finally:
        proc.terminate()
        proc.wait()
    return times


def cell_key(cell: dict) -> str:
    return (f"{cell['images']}img-{round(cell['rtt_s'] * 1000)}ms-{'faults' if cell['faults'] else 'clean'}"
            f"-{cell['workers']}w")


def git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if proc.returncode == 0 else "unknown"


def median(runs: list[float]) -> float | None:
    return statistics.median(runs) if runs else None


def report(cells: dict) -> str:
    """The Markdown table of every cell (sorted by faults, round trip, images, workers)."""
    lines = ["| images | round trip | faults | parallel | isic-cli s (runs) | ours s (runs) | sequential s | "
             "throughput ours / isic-cli |", "|---:|---:|---|---:|---|---|---:|---:|"]
    order = sorted(cells.values(), key=lambda c: (c["faults"], c["rtt_s"], c["images"], c["workers"]))
    for c in order:
        runs = c["runs"]

        def cell(arm: str) -> str:
            if not runs.get(arm):
                return "not run"
            return f"{median(runs[arm]):.2f} ({' '.join(f'{t:.2f}' for t in runs[arm])})"

        seq = f"{median(runs['sequential']):.2f}" if runs.get("sequential") else "not run"
        ratio = (f"{median(runs['isic-cli']) / median(runs['ours']):.2f}x"
                 if runs.get("isic-cli") and runs.get("ours") else "n/a")
        lines.append(f"| {c['images']:,} | {c['rtt_s'] * 1000:.0f} ms | {'seeded' if c['faults'] else 'none'} | "
                     f"{c['workers']} | {cell('isic-cli')} | {cell('ours')} | {seq} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rtt", type=float, default=0.05, help="imitated round trip in seconds (default 0.05)")
    parser.add_argument("--faults", action="store_true", help=f"inject the seeded faults (seed {FAULT_SEED})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per arm; the median is reported")
    parser.add_argument("--scale", type=float, default=2.0, help="picture size factor (2.0: about 130 KB a file)")
    parser.add_argument("--workers", type=int, default=None,
                        help="ours: --workers (default: isic-cli's thread count, max(10, cpu count))")
    parser.add_argument("--sequential-runs", type=int, default=None,
                        help="run the (slow) sequential arm only in the first K repeats (default: every repeat)")
    parser.add_argument("--arms", default="isic-cli,ours,sequential", help="which arms, comma-separated")
    parser.add_argument("--json", type=Path, help="add this cell's raw timings to this JSON file")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the table of a JSON file, run nothing")
    parser.add_argument("--sequential-arm", nargs=2, metavar=("API_URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sequential_arm:
        sequential(args.sequential_arm[0], Path(args.sequential_arm[1]))
        return 0
    if args.report:
        print(report(json.loads(args.report.read_text())["cells"]))
        return 0

    arms = args.arms.split(",")
    version = check_isic_cli(sys.executable) if "isic-cli" in arms else None
    workers = args.workers or isic_cli_threads()
    times = measure(args, arms, workers)
    cell = {"images": args.images, "rtt_s": args.rtt, "connect_rtts": CONNECT_RTTS, "tls": True,
            "faults": args.faults, "workers": workers, "isic_cli_threads": isic_cli_threads(),
            "repeats": args.repeats, "scale": args.scale, "runs": times, "isic_cli": version,
            "code": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}",
            "command": "benchmarks/isic_download.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(report({cell_key(cell): cell}))
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.exists() else {"cells": {}}
        data["cells"][cell_key(cell)] = cell
        tmp = args.json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
