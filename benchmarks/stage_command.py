"""One stage command of a benchmark's scratch pipeline: run it in the run folder, its output appended to a
log, and give its wall seconds. Shared by robustness.py and recalibration.py; they import it by putting
their own folder first on sys.path (benchmarks/ is no package, and doc-figures.py loads them by path)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


class StageFailed(RuntimeError):
    """A stage command exited non-zero; the message holds its last log lines and the log's path."""


def sh(cmd: list[str], cwd: Path, log: Path, progress: bool = False) -> float:
    started = time.time()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc:
        tail = [line for line in log.read_text().splitlines() if line.strip()][-3:]
        raise StageFailed(f"{' '.join(cmd[:2])} exited {rc}: {' | '.join(tail)} (log: {log})")
    seconds = round(time.time() - started, 1)
    if progress:
        print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd[:3])}: {seconds} s", flush=True)
    return seconds
