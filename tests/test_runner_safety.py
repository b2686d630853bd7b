"""The two runners share one folder safely (issue 21).

A failed job loses nothing that git holds: the committed baseline (results/variants/*/
{metrics.json, evaluation.json, plots/}, results/all/metrics.csv) is an output of evaluate and compare, and
both runners used to delete it when such a job failed. Snakemake now backs it up and restores it (update()
in the rules), DVC leaves it in place (persist in dvc.yaml); the stages write atomically, so a failed
job leaves the old files whole. `.venv/bin/snakemake` without an activated environment finds the
stage commands. And one runner at a time: a Snakemake run holds DVC's own repository lock, so each refuses
while the other runs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import BIN, REPO, copy_workflow, run, tiny_params, tool, write_params

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
GIT = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org"]


def _params() -> dict:
    params = tiny_params(logreg={"kind": "logreg", "task": "binary"})
    params["data"]["synthetic"]["n_patients"] = 60
    params["images"]["size"] = 32
    params["evaluate"]["bootstrap"] = 50
    return params


def _committed(folder) -> dict[str, bytes]:
    names = run(["git", "ls-files", "results"], cwd=folder).stdout.split()
    return {n: (folder / n).read_bytes() for n in names}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A finished run whose results/ are committed to git, as the repository commits its baseline."""
    folder = copy_workflow(tmp_path_factory.mktemp("failed"))
    shutil.copy2(REPO / ".gitignore", folder / ".gitignore")  # as a clone has it: no nested .gitignore from DVC
    write_params(folder / "params.yaml", _params())
    run(["git", "init", "-q"], cwd=folder)
    run([tool("dvc"), "init", "-q"], cwd=folder)
    run([tool("dvc"), "repro"], cwd=folder)
    run([*GIT, "add", "-A"], cwd=folder)
    run([*GIT, "commit", "-q", "-m", "baseline"], cwd=folder)
    committed = _committed(folder)
    assert any(n.endswith("metrics.json") for n in committed) and "results/all/metrics.csv" in committed
    return folder, committed


def _break_the_model(folder) -> None:
    (folder / "models/logreg/bundle.json").write_text("{ not json")


def _unbreak(folder) -> None:
    run(["git", "checkout", "--", "."], cwd=folder)
    run([tool("dvc"), "checkout", "-f"], cwd=folder)


def test_a_failing_snakemake_job_keeps_the_committed_files(project):
    folder, committed = project
    _break_the_model(folder)
    try:
        failed = run([tool("snakemake"), "--cores", "1", "--forcerun", "evaluate", "results/all"], cwd=folder,
                     check=False)
        assert failed.returncode != 0, "the broken model should make evaluate fail"
        assert _committed(folder) == committed
        assert run(["git", "status", "--porcelain", "results"], cwd=folder).stdout == ""
    finally:
        _unbreak(folder)


def test_a_failing_dvc_stage_keeps_the_committed_files(project):
    folder, committed = project
    _break_the_model(folder)
    try:
        failed = run([tool("dvc"), "repro", "-s", "evaluate@logreg"], cwd=folder, check=False)
        assert failed.returncode != 0, "the broken model should make evaluate fail"
        assert _committed(folder) == committed
    finally:
        _unbreak(folder)


def test_snakemake_from_the_venv_without_activation_runs_the_stages(project):
    folder, committed = project
    bare = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    bare["PATH"] = "/usr/bin:/bin"  # no environment on PATH: only the absolute path to snakemake
    proc = subprocess.run([str(BIN / "snakemake"), "--cores", "1", "--forcerun", "compare", "results/all"],
                          cwd=folder, env={**bare, "SKINLESION_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _committed(folder) == committed  # the same run gives the same bytes


def test_snakemake_refuses_while_dvc_holds_its_lock(project):
    """DVC's lock taken as `dvc repro` takes it (zc.lockfile on .dvc/tmp/lock): Snakemake stops before any job."""
    import zc.lockfile

    folder, committed = project
    held = zc.lockfile.LockFile(str(folder / ".dvc/tmp/lock"))
    try:
        proc = run([tool("snakemake"), "--cores", "1", "--forcerun", "compare", "results/all"], cwd=folder,
                   check=False)
    finally:
        held.close()
    assert proc.returncode != 0
    assert "a DVC command (dvc repro?) is running in this folder" in proc.stderr
    assert "rule compare" not in proc.stdout + proc.stderr.split("a DVC command")[1]
    assert _committed(folder) == committed


def test_dvc_refuses_while_a_snakemake_run_holds_the_lock(project, monkeypatch):
    """What the Snakefile's onstart does (runners.hold_dvc_lock), then `dvc repro`: DVC's own refusal."""
    from skinlesion import runners

    folder, _ = project
    monkeypatch.chdir(folder)
    assert runners.hold_dvc_lock() is None
    try:
        proc = run([tool("dvc"), "repro", "-f", "-s", "compare"], cwd=folder, check=False)
        assert proc.returncode != 0 and "Unable to acquire lock" in proc.stderr
        assert runners.hold_dvc_lock() is not None  # a second run (another process would be refused too)
    finally:
        runners._held_dvc_lock.close()
        runners._held_dvc_lock = None
