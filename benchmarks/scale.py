"""Benchmark: the pipeline at scale, per stage, and the no-op checks of both runners.

For each N in --sizes, in a scratch project of its own (--work/N: dvc.yaml, .dvcignore, workflow/, src/ and
weights/ copied from this repository, `git init` + `dvc init`), with a params.yaml that is the repository's
but for

  data.synthetic   n_patients = N // 2 (images_per_patient [1, 3]: about 2 per patient, so about N images;
                   the actual count is read from data/raw/source.json), image_size 64
  images.size      64
  evaluate.external  []
  variants         logreg only (the cheap variant: metadata, no images, no weights)

it runs the pipeline once with `dvc repro -s STAGE`, one stage after another in DAG order (fetch, metadata,
images, external, train@logreg, evaluate@logreg, compare), each under /usr/bin/time -v: wall seconds and
peak RSS ("Maximum resident set size": the largest single process, dvc or the stage command). The stage
command itself is timed too, through a `skinlesion` shim first on PATH that runs the real one under
/usr/bin/time -v, so each stage splits into the command's seconds and DVC's own (hashing deps and outputs,
caching them, writing dvc.lock). Then the no-op checks, in this order:

  dvc status                           median of --repeats runs (every run kept in the JSON)
  snakemake -n --cores 1 results/all   median of --repeats runs, and the number of jobs it plans (a no-op: 0)
  dvc commit -f                        once (records every stage again, as after a snakemake run)
  snakemake -n ... after the commit    the jobs it plans now (0 if the commit kept the no-op a no-op)
  dvc status after the commit          median of --repeats runs

Prints a table per N (and seconds per 1000 images, so linearity shows) and, with --json, writes every number
(merged into the file by N, so sizes can be measured in separate runs).

    .venv/bin/python benchmarks/scale.py --sizes 2000 20000 100000 --work /tmp/scale --json /tmp/scale.json
    .venv/bin/python benchmarks/scale.py --report /tmp/scale.json     # the tables again, from the JSON

dvc, snakemake and skinlesion are taken from beside the Python that runs this (else PATH); the stage
commands run whatever `skinlesion` package that Python imports (PYTHONPATH=src for this checkout's).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["fetch", "metadata", "images", "external", "train@logreg", "evaluate@logreg", "compare"]
VARIANT = "logreg"


def which(name: str) -> str:
    """A console script beside this Python (the venv's), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found beside {sys.executable} nor on PATH")
    return found


def scale_params(n: int) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "synthetic"
    params["data"]["synthetic"].update(n_patients=max(10, n // 2), images_per_patient=[1, 3], image_size=64)
    params["images"]["size"] = 64
    params["evaluate"]["external"] = []
    params["variants"] = {VARIANT: params["variants"][VARIANT]}
    return params


def make_project(folder: Path, n: int, env: dict) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, folder / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("workflow", "src", "weights"):
        shutil.copytree(ROOT / name, folder / name, ignore=ignore)
    (folder / "params.yaml").write_text(yaml.safe_dump(scale_params(n), sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True, env=env)
    subprocess.run([which("dvc"), "init", "-q"], cwd=folder, check=True, env=env)


def make_shim(folder: Path) -> Path:
    """A `skinlesion` that runs the real one under /usr/bin/time -v, writing to $SCALE_TIME_LOG."""
    shim = folder / "skinlesion"
    shim.write_text(f'#!/bin/sh\nexec /usr/bin/time -v -o "$SCALE_TIME_LOG" {which("skinlesion")} "$@"\n')
    shim.chmod(0o755)
    return folder


def time_log(path: Path) -> dict:
    """Peak RSS (MB) and exit status from a /usr/bin/time -v report."""
    text = path.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    seconds = None
    if wall:
        parts = [float(p) for p in wall.group(1).split(":")]
        seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"peak_mb": round(int(rss.group(1)) / 1024, 1) if rss else None, "time_v_seconds": seconds}


def timed(cmd: list[str], cwd: Path, env: dict, log: Path, check: bool = True) -> dict:
    """Run cmd under /usr/bin/time -v: wall seconds (perf_counter), peak RSS MB, output."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(log)] + cmd, check=False, cwd=cwd, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-5000:]}")
    return {"seconds": round(seconds, 2), "peak_mb": time_log(log)["peak_mb"], "rc": proc.returncode,
            "output": proc.stdout + proc.stderr}


def planned_jobs(output: str) -> tuple[int, dict]:
    """Jobs a `snakemake -n` output plans: (total, {rule: count}); (0, {}) for 'Nothing to be done'."""
    if "Nothing to be done" in output:
        return 0, {}
    counts = {}
    table = re.search(r"Job stats:\n(.*?)(?:\n\n|\Z)", output, re.DOTALL)
    for line in (table.group(1).splitlines() if table else []):
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    total = counts.pop("total", sum(counts.values()))
    return total, counts


def job_reasons(output: str) -> dict:
    """{rule[@variant]: its 'reason:' line} from a `snakemake -n` output."""
    reasons = {}
    for block in re.split(r"\n(?=rule |localrule )", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        reason = re.search(r"^\s*reason: (.*)$", block, re.MULTILINE)
        if rule and reason:
            variant = re.search(r"wildcards: variant=(\w+)", block)
            reasons[rule.group(1) + (f"@{variant.group(1)}" if variant else "")] = reason.group(1)
    return reasons


def repeated(cmd: list[str], folder: Path, env: dict, repeats: int, name: str) -> dict:
    runs = [timed(cmd, folder, env, folder / ".scale" / f"{name}-{i}.time") for i in range(repeats)]
    return {"median_s": round(statistics.median(r["seconds"] for r in runs), 2),
            "runs_s": [r["seconds"] for r in runs], "peak_mb": max(r["peak_mb"] or 0 for r in runs),
            "output": runs[-1]["output"].strip()[-2000:]}


def measure(n: int, folder: Path, repeats: int, base_env: dict) -> dict:
    env = {**base_env, "SKINLESION_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    make_project(folder, n, env)
    (folder / ".scale").mkdir()
    shim = make_shim(folder / ".scale")
    dvc, snakemake = which("dvc"), which("snakemake")
    result = {"n_requested": n, "folder": str(folder),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "stages": {}}

    print(f"\n== N = {n} in {folder}", flush=True)
    repro_env = {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}"}
    for stage in STAGES:
        cmd_log = folder / ".scale" / f"{stage}.cmd.time"
        out = timed([dvc, "repro", "-s", stage], folder, {**repro_env, "SCALE_TIME_LOG": str(cmd_log)},
                    folder / ".scale" / f"{stage}.time")
        command = time_log(cmd_log) if cmd_log.exists() else {"peak_mb": None, "time_v_seconds": None}
        row = {"seconds": out["seconds"], "peak_mb": out["peak_mb"],
               "command_seconds": command["time_v_seconds"], "command_peak_mb": command["peak_mb"]}
        if row["command_seconds"] is not None:
            row["dvc_seconds"] = round(row["seconds"] - row["command_seconds"], 2)
        result["stages"][stage] = row
        print(f"  dvc repro -s {stage:<16} {row['seconds']:8.2f} s  peak {row['peak_mb']:7.1f} MB   "
              f"(command {row['command_seconds']} s, {row['command_peak_mb']} MB)", flush=True)

    source = json.loads((folder / "data" / "raw" / "source.json").read_text())
    result["source"] = {k: v for k, v in source.items() if not isinstance(v, dict)}
    result["images"] = source["images"]
    raw = folder / "data" / "raw"
    packed = None
    if (raw / "manifest.csv").exists():
        with open(raw / "manifest.csv", newline="", encoding="utf-8") as fh:
            packed = sum(1 for _ in csv.reader(fh)) - 1  # rows, not lines
    on_disk = packed if packed is not None else len(list((raw / "images").iterdir()))
    result["raw_files"] = sum(1 for p in raw.rglob("*") if p.is_file())  # what DVC hashes for data/raw
    print(f"  images (data/raw/source.json): {result['images']}, "
          f"{'packed (manifest.csv)' if packed is not None else 'files in data/raw/images'}: {on_disk}; "
          f"files under data/raw: {result['raw_files']}", flush=True)

    status = repeated([dvc, "status"], folder, env, repeats, "dvc-status")
    result["dvc_status"] = status
    print(f"  dvc status              {status['median_s']:8.2f} s  {status['runs_s']}  "
          f"-> {status['output'].splitlines()[-1] if status['output'] else ''}", flush=True)
    smk_cmd = [snakemake, "-n", "--cores", "1", "results/all"]
    smk = repeated(smk_cmd, folder, env, repeats, "snakemake-n")
    smk["jobs"], smk["job_counts"] = planned_jobs(smk["output"])
    result["snakemake_n"] = smk
    print(f"  snakemake -n            {smk['median_s']:8.2f} s  {smk['runs_s']}  jobs planned: {smk['jobs']}",
          flush=True)

    commit = timed([dvc, "commit", "-f"], folder, env, folder / ".scale" / "dvc-commit.time")
    result["dvc_commit"] = {"seconds": commit["seconds"], "peak_mb": commit["peak_mb"]}
    print(f"  dvc commit -f           {commit['seconds']:8.2f} s  peak {commit['peak_mb']} MB", flush=True)
    after = timed(smk_cmd, folder, env, folder / ".scale" / "snakemake-n-after-commit.time")
    jobs, counts = planned_jobs(after["output"])
    (folder / ".scale" / "snakemake-n-after-commit.out").write_text(after["output"])
    result["snakemake_n_after_commit"] = {"seconds": after["seconds"], "jobs": jobs, "job_counts": counts,
                                          "reasons": job_reasons(after["output"])}
    print(f"  snakemake -n after commit {after['seconds']:6.2f} s  jobs planned: {jobs} {counts}", flush=True)
    for job, why in result["snakemake_n_after_commit"]["reasons"].items():
        print(f"    {job}: {why[:150]}", flush=True)
    # the documented step after a DVC command that rewrites outputs (README, "The runners see each other")
    step = timed(["bash", "workflow/scripts/after-dvc.sh"], folder, env, folder / ".scale" / "after-dvc.time")
    again = timed(smk_cmd, folder, env, folder / ".scale" / "snakemake-n-after-step.time")
    jobs, counts = planned_jobs(again["output"])
    result["after_dvc_step"] = {"seconds": step["seconds"], "peak_mb": step["peak_mb"]}
    result["snakemake_n_after_step"] = {"seconds": again["seconds"], "jobs": jobs, "job_counts": counts,
                                        "reasons": job_reasons(again["output"])}
    print(f"  after-dvc.sh            {step['seconds']:8.2f} s, then snakemake -n {again['seconds']:.2f} s  "
          f"jobs planned: {jobs} {counts}", flush=True)
    status_after = repeated([dvc, "status"], folder, env, repeats, "dvc-status-after")
    result["dvc_status_after_commit"] = status_after
    print(f"  dvc status after commit {status_after['median_s']:8.2f} s  {status_after['runs_s']}", flush=True)
    return result


def report(results: dict) -> str:
    """Markdown tables: per-stage seconds and peak MB, seconds per 1000 images, the no-op checks."""
    sizes = sorted(results.values(), key=lambda r: r["images"])
    head = "| | " + " | ".join(f"{r['images']:,} images" for r in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)
    title = ("Per stage (`dvc repro -s STAGE`): wall seconds (of which the stage command), "
             "seconds per 1000 images, peak RSS")
    lines = [title, "", head, rule]
    for stage in STAGES:
        cells = []
        for r in sizes:
            s = r["stages"][stage]
            per_k = s["seconds"] / r["images"] * 1000
            cells.append(f"{s['seconds']:.1f} s ({s['command_seconds']:.1f}) · {per_k:.2f} s/1k · "
                         f"{s['peak_mb']:.0f} MB")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    total = [sum(s["seconds"] for s in r["stages"].values()) for r in sizes]
    lines.append("| **all stages** | " + " | ".join(
        f"**{t:.1f} s** · {t / r['images'] * 1000:.2f} s/1k" for t, r in zip(total, sizes)) + " |")
    lines += ["", "No-op checks after the run (median of the runs shown)", "", head, rule]
    lines.append("| `dvc status` | " + " | ".join(
        f"{r['dvc_status']['median_s']:.2f} s ({', '.join(f'{x:.2f}' for x in r['dvc_status']['runs_s'])}), "
        f"{r['dvc_status']['peak_mb']:.0f} MB" for r in sizes) + " |")
    lines.append("| `snakemake -n --cores 1 results/all` | " + " | ".join(
        f"{r['snakemake_n']['median_s']:.2f} s, {r['snakemake_n']['jobs']} jobs" for r in sizes) + " |")
    lines.append("| `dvc commit -f` | " + " | ".join(
        f"{r['dvc_commit']['seconds']:.1f} s, {r['dvc_commit']['peak_mb']:.0f} MB" for r in sizes) + " |")
    lines.append("| `snakemake -n` after `dvc commit -f` | " + " | ".join(
        f"{r['snakemake_n_after_commit']['seconds']:.2f} s, {r['snakemake_n_after_commit']['jobs']} jobs"
        + (f" ({', '.join(r['snakemake_n_after_commit']['job_counts'])})"
           if r['snakemake_n_after_commit']['jobs'] else "") for r in sizes) + " |")
    if all("snakemake_n_after_step" in r for r in sizes):
        lines.append("| then `workflow/scripts/after-dvc.sh`; `snakemake -n` | " + " | ".join(
            f"{r['after_dvc_step']['seconds']:.1f} s; {r['snakemake_n_after_step']['seconds']:.2f} s, "
            f"{r['snakemake_n_after_step']['jobs']} jobs" for r in sizes) + " |")
    if all("raw_files" in r for r in sizes):
        lines.append("| files under data/raw (what DVC hashes) | " + " | ".join(
            f"{r['raw_files']:,}" for r in sizes) + " |")
    lines.append("| `dvc status` after `dvc commit -f` | " + " | ".join(
        f"{r['dvc_status_after_commit']['median_s']:.2f} s" for r in sizes) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000],
                        help="images per run (about: n_patients = N // 2)")
    parser.add_argument("--work", default="/tmp/scale", help="scratch folder; each N gets WORK/N (replaced)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each no-op check (median reported)")
    parser.add_argument("--json", help="merge the numbers into this file, by N")
    parser.add_argument("--report", metavar="JSON", help="print the tables of a --json file and stop")
    args = parser.parse_args(argv)

    if args.report:
        print(report(json.loads(Path(args.report).read_text())["results"]))
        return 0
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    versions = {name: subprocess.run([which(name), "--version"], check=False, capture_output=True,
                                     text=True).stdout.strip() for name in ("dvc", "snakemake")}
    meta = {"machine": f"{os.cpu_count()} CPU cores, {platform.platform()}", "python": platform.python_version(),
            **versions,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT,
                                     capture_output=True, text=True).stdout.strip()}
    data = {"meta": meta, "results": {}}
    if args.json and Path(args.json).exists():
        data = json.loads(Path(args.json).read_text())
        data["meta"] = meta
    for n in args.sizes:
        result = measure(n, Path(args.work) / str(n), args.repeats, env)
        data["results"][str(n)] = result
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    print()
    print(report(data["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
