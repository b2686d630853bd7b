"""Glue that lets Snakemake and DVC share one working folder (used by workflow/rules/common.smk).

No stage imports this module: it decides when jobs run, never what they compute.

- Snakemake keeps no record of jobs that `dvc repro` ran, so after a `dvc repro` it would only see
  mtimes and miss a params edit. `params_marker` gives every job a small input file holding the
  params it reads; the file is rewritten (new mtime: the job reruns) only when those values change,
  and it is dated 1970 when they equal what dvc.lock recorded for the stage (the outputs on disk
  were made with exactly them).
- After `dvc checkout` / `dvc pull` every output carries the checkout's time, in no order, and
  Snakemake would rerun what merely looks older than its inputs. `date_outputs_in_dag_order` dates the
  outputs of each stage after those of the stages before it (their own mtimes, and the
  `.snakemake_timestamp` a Snakemake run left in a directory output: no new marker files inside DVC's
  outputs, unlike `snakemake --touch`). `dvc commit -f` needs the same: it rewrites the single-file
  outputs it caches (new mtimes, newer than what was made from them).
- A Snakemake killed with SIGKILL leaves its lock in .snakemake/locks (which records no process),
  and the next plain `snakemake` refuses to start. `release_stale_lock` records which process took
  the lock and removes it when that process is gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import yaml

from .io import SNAKEMAKE_TIMESTAMP

log = logging.getLogger(__name__)
STATE = Path(".snakemake/skinlesion")
LOCKS = Path(".snakemake/locks")


def job_name(stage: str, wildcards: dict) -> str:
    """A job's name as DVC spells its stage: `train@mobilenet_frozen`."""
    return stage + "".join(f"@{v}" for v in wildcards.values())


def benchmark_file(job: str) -> str:
    """Where Snakemake writes a job's benchmark (the rules' `benchmark:`), from the job's DVC name:
    `train@logreg` -> logs/benchmarks/train/logreg.tsv, `compare` -> logs/benchmarks/compare.tsv
    (`train@{variant}` gives the rule's pattern). A Snakemake job's oldest output is its benchmark
    as often as not, so `date_outputs_in_dag_order` dates it with the stage's outputs."""
    stage, *values = job.split("@")
    return "/".join(["logs/benchmarks", stage, *values]) + ".tsv"


def dvc_lock_params(lock_path: str | os.PathLike = "dvc.lock", params_file: str = "params.yaml") -> dict[str, dict]:
    """{stage name: {dotted key: value}} as dvc.lock recorded them; {} when there is no usable lock."""
    try:
        lock = yaml.safe_load(Path(lock_path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        return {}
    return {name: (stage.get("params") or {}).get(params_file) or {}
            for name, stage in stages.items() if isinstance(stage, dict)}


def params_marker(name: str, values: dict, dvc_params: dict | None, state: Path = STATE) -> str:
    """The path of `name`'s params file, (re)written only when `values` differ from its content.

    `dvc_params`: what dvc.lock recorded for this stage (None when the run does not use params.yaml).
    """
    path = state / "params" / f"{name}.json"
    text = json.dumps(values, sort_keys=True, default=str)
    try:
        unchanged = path.read_text(encoding="utf-8") == text
    except OSError:
        unchanged = False
    if not unchanged:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        if dvc_params is not None and _same(values, dvc_params):
            os.utime(tmp, (0, 0))  # older than any output: what is on disk was made with these values
        os.replace(tmp, path)
    return str(path)


def _same(values: dict, recorded: dict) -> bool:
    def text(d):
        return json.dumps(d, sort_keys=True, default=str)

    return set(values) <= set(recorded) and text(values) == text({k: recorded[k] for k in values})


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def record_lock_owner(state: Path = STATE) -> None:
    """Called by Snakemake's `onstart` (real runs only, after it took the lock): who holds the lock."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "lock-owner").write_text(f"{os.getpid()} {_process_start(os.getpid())}", encoding="utf-8")


def put_this_environment_on_path() -> None:
    """Put the folder of the Python running Snakemake (a virtual environment's bin/) first on PATH, which
    its jobs' shells inherit: run as `.venv/bin/snakemake` without activating the environment, every job
    failed with `skinlesion: not found`."""
    import sys

    here = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])


DVC_LOCK = Path(".dvc/tmp/lock")
_held_dvc_lock = None  # kept for the whole Snakemake run; the kernel releases it when the process ends


def hold_dvc_lock(lock: Path = DVC_LOCK) -> str | None:
    """Called by Snakemake's `onstart`: take DVC's own repository lock (the one `dvc repro` holds while it
    runs) for this run, so that the two runners never write the same outputs at once. A `dvc repro` started
    meanwhile stops at once with DVC's "Unable to acquire lock"; when DVC already holds it, the message that
    stops this run (None when the lock was taken, or there is no DVC repository here)."""
    global _held_dvc_lock
    if not lock.parent.parent.is_dir():  # no .dvc: not a DVC repository, nothing to share
        return None
    try:
        import zc.lockfile  # DVC's lock library (a dependency of dvc)
    except ImportError:
        return None
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        _held_dvc_lock = zc.lockfile.LockFile(str(lock))
    except zc.lockfile.LockError:
        return (f"skinlesion: a DVC command (dvc repro?) is running in this folder: it holds {lock}. Wait for "
                "it to end, then run snakemake again (the two runners must not write the same outputs at once).")
    return None


def release_stale_lock(state: Path = STATE, locks: Path = LOCKS) -> bool:
    """Remove Snakemake's lock when the process that took it is dead; True when one was removed.

    Only a lock recorded by `record_lock_owner` after it was taken is judged: a lock newer than the
    record (a run that has not reached `onstart` yet, or one without this workflow's hook) is left
    alone, and Snakemake then reports it as usual.
    """
    owner = state / "lock-owner"
    if not locks.exists():
        return False
    try:
        pid, started = owner.read_text(encoding="utf-8").split()
        recorded_after_lock = owner.stat().st_mtime >= locks.stat().st_mtime
        alive = _process_start(int(pid)) == float(started)
    except (OSError, ValueError):
        return False
    if alive or not recorded_after_lock:
        return False
    shutil.rmtree(locks, ignore_errors=True)
    owner.unlink(missing_ok=True)
    log.warning("removed the lock left by Snakemake process %s, which is no longer running", pid)
    return True


STEP = 0.001  # seconds between DAG levels
TIMESTAMP = SNAKEMAKE_TIMESTAMP  # where Snakemake keeps a directory output's mtime, when the file is there


def date_outputs_in_dag_order(repo: str | os.PathLike = ".", start: float | None = None) -> int:
    """Set the mtime of every output of dvc.yaml's stages, one millisecond per DAG level, upstream first.
    Returns the number of paths dated. Call it only when `dvc status` is clean.

    Milliseconds, not seconds: the newest output must not lie in the future, or an edit made within the
    next few seconds would look older than it and Snakemake would miss it.

    A folder's `.snakemake_timestamp`, where one is (Snakemake writes it into every directory output it
    makes, and reads a folder's mtime from it), is dated with the folder: dating only the folder would leave
    the outputs of a Snakemake run looking older than a checked-out or committed input. None is created.
    So is the stage's Snakemake benchmark file (`benchmark_file`), where there is one: Snakemake counts
    it among the job's outputs."""
    import time

    import networkx as nx
    from dvc.repo import Repo

    start = time.time() if start is None else start
    with Repo(str(repo)) as dvc:
        graph = dvc.index.graph
        stages = [s for s in graph if getattr(s, "cmd", None)]
        # DVC's graph points from a stage to the stages it depends on
        level = {s: 0 for s in stages}
        for stage in reversed(list(nx.topological_sort(graph.subgraph(stages)))):
            for dep in graph.successors(stage):
                if dep in level:
                    level[stage] = max(level[stage], level[dep] + 1)
        root = Path(dvc.root_dir).resolve()
        times: dict[Path, float] = {}
        for stage in stages:
            t = start + level[stage] * STEP
            for out in stage.outs:
                path = Path(out.fs_path)
                if not path.exists():
                    continue
                # and the folders holding it, which Snakemake may declare as one directory output
                # (results/variants/<v>/plots where DVC lists the plot files one by one); a folder
                # holding outputs of several stages gets the latest stage's time
                for p in [path, *path.parents]:
                    if p.resolve() == root or root not in p.resolve().parents:
                        break
                    times[p] = max(times.get(p, t), t)
                    if (p / TIMESTAMP).is_file():
                        times[p / TIMESTAMP] = times[p]
            benchmark = Path(stage.wdir) / benchmark_file(stage.name)
            if benchmark.is_file():
                times[benchmark] = t
    for p, t in times.items():
        os.utime(p, (t, t))
    return len(times)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["date-outputs"]:
        print(f"dated {date_outputs_in_dag_order()} outputs in DAG order")
    else:
        sys.exit("usage: python -m skinlesion.runners date-outputs")
