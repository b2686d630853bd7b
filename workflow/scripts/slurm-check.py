#!/usr/bin/env python3
"""Before submitting: does every job the SLURM profile would submit fit a partition of the site file?

    python workflow/scripts/slurm-check.py results/all [the same snakemake options as the run]

Plans the run (`snakemake --profile workflow/profiles/slurm -n ...`, threads uncapped) and compares each
job's request (threads or cpus_per_task, mem_mb, runtime, gpu or gres gpu:N, slurm_partition when one is
set) with workflow/profiles/slurm/site.yaml (`--site FILE` for another). Exit 0 with one line when all fit;
exit 1 with one line per job that fits nothing, its request and each partition's limits, so that such a
job is never submitted to wait in a queue that can never start it.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import yaml

SITE = Path("workflow/profiles/slurm/site.yaml")
RESOURCE = re.compile(r"(\w+)=([^,]*)")


def planned(args: list[str]) -> list[dict]:
    """Each job of the dry run: its name and its request."""
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake) if snakemake.exists() else "snakemake", "--profile", "workflow/profiles/slurm", "-n",
           *args, "--cores", "1048576"]  # a dry run caps threads at --cores: uncapped, what sbatch would get
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"slurm-check: the plan failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", proc.stdout + proc.stderr):
        if not (rule := re.match(r"rule (\w+):", block)):
            continue
        variant = re.search(r"^\s+wildcards: variant=(\w+)", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        req = dict(RESOURCE.findall(resources.group(1))) if resources else {}
        gres = re.search(r"gpu(?::[\w.-]+)?:(\d+)", req.get("gres", ""))
        jobs.append({
            "job": rule.group(1) + (f"@{variant.group(1)}" if variant else ""),
            "cpus": int(req.get("cpus_per_task") or (threads.group(1) if threads else 1)),
            "mem_mb": float(req.get("mem_mb", 0) or 0),
            "runtime": float(req.get("runtime", 0) or 0),
            "gpu": int(req.get("gpu", 0) or 0) or (int(gres.group(1)) if gres else 0),
            "partition": req.get("slurm_partition") or None,
        })
    return jobs


def fits(job: dict, limits: dict) -> bool:
    return (job["cpus"] <= limits.get("max_threads", math.inf)
            and job["mem_mb"] <= limits.get("max_mem_mb", math.inf)
            and job["runtime"] <= limits.get("max_runtime", math.inf)
            and job["gpu"] <= limits.get("max_gpu", 0))


def describe(limits: dict) -> str:
    runtime = limits.get("max_runtime")
    return (f"{limits.get('max_threads', 'any')} CPUs, {limits.get('max_mem_mb', 'any')} MB, "
            f"{limits.get('max_gpu', 0)} GPUs, {f'{runtime} min' if runtime is not None else 'no time limit'}")


def main(argv: list[str]) -> int:
    site = SITE
    if "--site" in argv:
        i = argv.index("--site")
        site, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    partitions = (yaml.safe_load(site.read_text()) or {}).get("partitions") or {}
    if not partitions:
        print(f"slurm-check: {site} lists no partitions", file=sys.stderr)
        return 1
    jobs = planned(argv)
    bad = []
    for job in jobs:
        named = {job["partition"]: partitions.get(job["partition"], {})} if job["partition"] else partitions
        if not any(fits(job, limits) for limits in named.values()):
            where = "; ".join(f"{name}: {describe(limits)}" for name, limits in named.items())
            bad.append(f"slurm-check: {job['job']} requests {job['cpus']} CPUs, {job['mem_mb']:.0f} MB, "
                       f"{job['runtime']:.0f} min, {job['gpu']} GPUs: no partition of {site} fits it ({where})")
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    print(f"slurm-check: all {len(jobs)} jobs fit a partition of {site} ({', '.join(partitions)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
