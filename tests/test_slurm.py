"""The pipeline on a real SLURM: a one-node cluster (.ci/slurm.sh: slurm-wlm, munge, slurmctld and slurmd on
this machine), the project's SLURM profile, every job through sbatch, the outputs equal to the committed
baseline. The steps are the commands of docs/cluster.md ("SLURM: a site's steps"):

    .ci/slurm.sh
    python workflow/scripts/slurm-site.py > workflow/profiles/slurm/site.yaml
    python workflow/scripts/slurm-check.py results/all --set-resources train:gpu=0 evaluate:gpu=0
    snakemake --profile workflow/profiles/slurm results/all --set-resources train:gpu=0 evaluate:gpu=0 \
        --slurm-status-command squeue --slurm-keep-successful-logs

Run on the repository's params.yaml with two of its variants (logreg, cnn: a metadata fit and an image
model; about 3 minutes on 2 CPUs). Skipped, with the reason, only where no cluster can be started (not root
and no running SLURM); as root (CI) a cluster that does not start is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, copy_workflow, run, tool, tool_env, write_params
from test_baseline import METADATA_FITS, RANK_METRICS, RANK_TOLERANCE, TOLERANCE, _numbers

pytestmark = [pytest.mark.e2e, pytest.mark.slurm, pytest.mark.timeout(900)]
VARIANTS = ("logreg", "cnn")
SCRIPT = REPO / ".ci" / "slurm.sh"
# What a site without accounting or GPUs passes, and --slurm-keep-successful-logs so that every job's SLURM
# log stays for the check below. The status-check waits are shortened only to keep CI quick.
NO_GPUS = ["train:gpu=0", "evaluate:gpu=0"]
SITE_ARGS = ["--slurm-status-command", "squeue", "--slurm-keep-successful-logs",
             "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]


def _sinfo_ok() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="module")
def cluster():
    """A running one-node SLURM: started by .ci/slurm.sh (root), or one already running; stopped after
    when this fixture started it."""
    was_up = _sinfo_ok()
    if os.geteuid() != 0:
        if not was_up:
            pytest.skip("no SLURM cluster: sinfo shows no idle node and .ci/slurm.sh needs root to start one")
        yield
        return
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f".ci/slurm.sh failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
    try:
        yield
    finally:
        if not was_up:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("slurm"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["variants"] = {v: params["variants"][v] for v in VARIANTS}
    write_params(work / "params.yaml", params)
    site = run([sys.executable, "workflow/scripts/slurm-site.py"], cwd=work).stdout
    (work / "workflow" / "profiles" / "slurm" / "site.yaml").write_text(site)
    check = run([sys.executable, "workflow/scripts/slurm-check.py", "results/all", "--set-resources", *NO_GPUS],
                cwd=work)
    assert f"all {len(_expected_jobs())} jobs fit a partition" in check.stdout, check.stdout
    before = _squeue_ids()
    out = _on_slurm(work, "results/all", timeout=800)
    return work, out.stdout + out.stderr, before


def _squeue_ids() -> dict[str, tuple[str, str]]:
    """job id -> (state, comment) of every job slurmctld still holds (MinJobAge keeps finished ones)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%k"], capture_output=True, text=True,
                         check=True).stdout
    return {i: (state, comment) for i, state, comment in (line.split("|", 2) for line in out.split("\n") if line)}


def _expected_jobs() -> list[tuple[str, str]]:
    jobs = [("fetch", ""), ("metadata", ""), ("images", ""), ("external", ""), ("compare", "")]
    return jobs + [(rule, v) for rule in ("train", "evaluate") for v in VARIANTS]


def test_every_job_ran_through_sbatch(slurm_run):
    work, log, before = slurm_run
    held = _squeue_ids()
    logs = work / ".snakemake" / "slurm_logs"
    for rule, variant in _expected_jobs():
        folder = logs / f"rule_{rule}" / variant if variant else logs / f"rule_{rule}"
        files = sorted(folder.glob("*.log")) if folder.is_dir() else []
        assert len(files) == 1, f"{rule} {variant}: {len(files)} SLURM logs in {folder}, want 1 (ran outside SLURM?)"
        job_id = files[0].stem
        assert job_id not in before, f"{rule} {variant}: SLURM job {job_id} is older than this run"
        assert f"submitted with SLURM jobid {job_id} " in log, f"{rule} {variant}: job {job_id} not in the log"
        state, comment = held.get(job_id, ("not held by slurmctld", ""))
        assert state == "COMPLETED", f"{rule} {variant}: SLURM job {job_id} is {state}"
        assert comment == f"rule_{rule}" + (f"_wildcards_{variant}" if variant else ""), (job_id, comment)
    # nothing ran as a local job
    assert "localrule" not in log, re.findall(r"localrule \w+", log)


def test_outputs_equal_the_committed_baseline(slurm_run):
    from skinlesion.platform_id import describe

    work, _, _ = slurm_run
    same_platform = json.loads((REPO / "results" / "baseline-platform.json").read_text()) == describe()
    for variant in VARIANTS:
        for name in ("metrics.json", "evaluation.json"):
            path = f"results/variants/{variant}/{name}"
            fresh, kept = ((d / path).read_bytes() for d in (work, REPO))
            if same_platform:
                assert fresh == kept, f"{path} differs from the committed baseline"
                continue
            # another CPU's float rounding: the bounds of tests/test_baseline.py
            new, old = (dict(_numbers(json.loads(b))) for b in (fresh, kept))
            assert new.keys() == old.keys(), path
            for key, value in old.items():
                gap = abs(new[key] - value)
                if variant in METADATA_FITS:
                    assert gap <= TOLERANCE, f"{path}:{key} moved by {gap}"
                elif key.split(".")[-1] in RANK_METRICS and ".test_natural." in f".{key}":
                    assert gap <= RANK_TOLERANCE, f"{path}:{key} moved by {gap}"
    rows = {r["variant"]: r for r in csv.DictReader((work / "results/all/metrics.csv").open())}
    committed = {r["variant"]: r for r in csv.DictReader((REPO / "results/all/metrics.csv").open())}
    assert sorted(rows) == sorted(VARIANTS)
    if same_platform:
        for variant in VARIANTS:
            assert rows[variant] == committed[variant], f"results/all/metrics.csv row {variant} differs"


def test_the_check_refuses_what_no_partition_fits_with_the_numbers(slurm_run):
    """The requests the profile used to make (issue 22: 8 CPUs, 32 GB, a GPU), on this 2-CPU node without
    GPUs: every job that cannot start is named with its request and the partitions' limits."""
    work, _, _ = slurm_run
    proc = run([sys.executable, "workflow/scripts/slurm-check.py", "results/all", "--forceall",
                "--set-threads", "images=8", "--set-resources", "train:mem_mb=10000000"], cwd=work, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().split("\n")
    assert any(line.startswith("slurm-check: images requests 8 CPUs,") for line in lines), lines
    assert any(line.startswith("slurm-check: train@logreg requests 2 CPUs, 10000000 MB") for line in lines), lines
    assert any(line.startswith("slurm-check: evaluate@cnn requests 2 CPUs, 8000 MB, 60 min, 1 GPUs") for line in lines)
    assert all("no partition of workflow/profiles/slurm/site.yaml fits it (main: " in line for line in lines), lines
    assert not any(line.startswith(("slurm-check: fetch", "slurm-check: evaluate@logreg")) for line in lines), lines


def _slurm_command(*args: str, resources: tuple[str, ...] = ()) -> list[str]:
    """snakemake through the project's SLURM profile with the site's options (docs/cluster.md's command)."""
    return [tool("snakemake"), "--profile", "workflow/profiles/slurm", *args, *SITE_ARGS,
            "--set-resources", *NO_GPUS, *resources]


def _on_slurm(work, *args: str, resources: tuple[str, ...] = (), check: bool = True, timeout: int = 600):
    return run(_slurm_command(*args, resources=resources), cwd=work, timeout=timeout, check=check)


def _submitted(log: str) -> list[str]:
    """The SLURM job ids a snakemake run's output says it submitted, in order."""
    return re.findall(r"submitted with SLURM jobid (\d+)", log)


def _failure_names_the_job_and_its_logs(out: str, rule: str, variant: str, job_id: str) -> None:
    slurm_log = f".snakemake/slurm_logs/rule_{rule}/{variant}/{job_id}.log"
    assert f"Error in rule {rule}:" in out, out[-3000:]
    assert f"logs/{rule}/{variant}.log" in out, out[-3000:]  # the stage's own log
    assert slurm_log in out, out[-3000:]  # and the job's SLURM log


def test_a_cancelled_job_leaves_no_output_and_a_plain_rerun_resubmits_only_what_is_missing(slurm_run):
    """A run that has still to train and evaluate cnn (its model, bundle and results, and the comparison,
    not made yet), and scancel of the running train job: Snakemake stops with an error naming the job and
    both its logs, models/cnn is not there (nothing half-written is taken as done), and the next plain run
    submits exactly train@cnn and what depends on it."""
    work, _, _ = slurm_run
    _on_slurm(work, "results/all")  # complete, whatever an earlier test removed
    # what a first run has still to make: cnn's train and evaluate outputs and the comparison (Snakemake
    # remakes a missing file only where something it is asked for needs it)
    for folder in ("models/cnn", "bundles/cnn", "results/variants/cnn", "results/all"):
        shutil.rmtree(work / folder)
    before = set(_squeue_ids())
    proc = subprocess.Popen(_slurm_command("results/all"), cwd=work, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        job_id = _wait_for_running(before, "rule_train_wildcards_cnn", proc)
        subprocess.run(["scancel", job_id], check=True)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    assert "SLURM status is: 'CANCELLED'" in out, out[-3000:]
    _failure_names_the_job_and_its_logs(out, "train", "cnn", job_id)
    assert not (work / "models" / "cnn").exists(), "the cancelled job's output is there"

    rerun = _on_slurm(work, "results/all")
    held = _squeue_ids()
    again = sorted(held[i][1] for i in _submitted(rerun.stdout + rerun.stderr))
    assert again == ["rule_compare", "rule_evaluate_wildcards_cnn", "rule_train_wildcards_cnn"], again
    assert all(held[i][0] == "COMPLETED" for i in _submitted(rerun.stdout + rerun.stderr))
    assert (work / "models" / "cnn" / "model.keras").is_file()
    assert _on_slurm(work, "-n", "results/all").stdout.count("rule ") == 0


def _wait_for_running(before: set[str], comment: str, proc: subprocess.Popen, limit: float = 400) -> str:
    """The id of the new SLURM job with this comment once it is RUNNING."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for job_id, (state, note) in _squeue_ids().items():
            if job_id not in before and note == comment and state == "RUNNING":
                return job_id
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended before {comment} ran:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {comment} job running after {limit} s")


def test_a_job_killed_for_memory_leaves_no_output_and_says_where_to_look(slurm_run):
    """A train job over its memory request is killed by SLURM (.ci/slurm.sh samples memory each second and
    kills over --mem, as a site's cgroups do): the run fails naming the job and its logs, the SLURM log says
    the memory limit was exceeded, and the model folder is not there."""
    work, _, _ = slurm_run
    proc = _on_slurm(work, "models/logreg", "--force", resources=("train:mem_mb=60",), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    job_id = _submitted(out)[-1]
    _failure_names_the_job_and_its_logs(out, "train", "logreg", job_id)
    slurm_log = work / ".snakemake" / "slurm_logs" / "rule_train" / "logreg" / f"{job_id}.log"
    assert "Exceeded job memory limit" in slurm_log.read_text(errors="replace"), slurm_log.read_text()[-2000:]
    assert not (work / "models" / "logreg").exists()


def test_a_request_no_partition_fits_is_refused_at_submission(slurm_run):
    """More memory than any node has: the job fails at sbatch with the request in the message, within
    seconds, instead of waiting in the queue."""
    work, _, _ = slurm_run
    proc = _on_slurm(work, "models/logreg", "--force", resources=("train:mem_mb=10000000",), timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "No suitable partition found for job train" in out, out[-3000:]
    assert "sbatch failed" in out and "--mem 10000000" in out, out[-3000:]
    assert not (work / "models" / "logreg").exists()
