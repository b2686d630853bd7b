#!/usr/bin/env python3
"""Write a SLURM site's limits as workflow/profiles/slurm/site.yaml expects them, from `sinfo`.

    python workflow/scripts/slurm-site.py > workflow/profiles/slurm/site.yaml

Per partition: the largest node's CPUs (max_threads) and memory (max_mem_mb), its GPUs (max_gpu, from
the gres column; 0 when none) and the time limit (max_runtime, minutes). Review the file: a site may hold
back part of each node, or want a partition left out. snakemake-executor-plugin-slurm's own
`generate-slurm-partition-config` writes CPUs only.
"""

from __future__ import annotations

import re
import subprocess
import sys


def minutes(limit: str) -> int | None:
    """sinfo's time limit ([days-]hours:minutes:seconds, or infinite) in minutes; None when unlimited."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


def gpus(gres: str) -> int:
    """GPUs per node from a gres column such as gpu:a100:4(S:0-1),shard:8."""
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[\w.-]+)?:(\d+)", gres))


def main() -> int:
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%R|%c|%m|%G|%l"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"slurm-site: sinfo failed: {getattr(e, 'stderr', '') or e}", file=sys.stderr)
        return 1
    parts: dict[str, dict] = {}
    for line in out.split("\n"):
        if not line.strip():
            continue
        name, cpus, mem, gres, limit = line.split("|")
        p = parts.setdefault(name, {"max_threads": 0, "max_mem_mb": 0, "max_gpu": 0})
        p["max_threads"] = max(p["max_threads"], int(cpus.rstrip("+")))
        p["max_mem_mb"] = max(p["max_mem_mb"], int(mem.rstrip("+")))
        p["max_gpu"] = max(p["max_gpu"], gpus(gres))
        if (m := minutes(limit)) is not None:
            p["max_runtime"] = m
    if not parts:
        print("slurm-site: sinfo lists no partition", file=sys.stderr)
        return 1
    print("# Written by workflow/scripts/slurm-site.py from sinfo: each partition's largest node.")
    print("partitions:")
    for name, p in parts.items():
        print(f"  {name}:")
        for key, value in p.items():
            print(f"    {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
