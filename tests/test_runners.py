"""skinlesion.runners: the params markers' dates and the stale-lock rule, without running a runner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from skinlesion import runners


def test_marker_is_dated_1970_when_dvc_lock_recorded_the_same_values(tmp_path):
    values = {"seed": 42, "evaluate": {"threshold": "youden"}}
    path = runners.params_marker("evaluate@lr", values, dict(values), state=tmp_path)
    assert os.stat(path).st_mtime == 0  # the outputs on disk were made with exactly these


def test_marker_is_rewritten_only_when_the_values_change(tmp_path):
    values = {"seed": 42, "evaluate": {"threshold": "youden"}}
    path = runners.params_marker("evaluate@lr", values, None, state=tmp_path)
    os.utime(path, (1000, 1000))
    runners.params_marker("evaluate@lr", values, None, state=tmp_path)
    assert os.stat(path).st_mtime == 1000  # unchanged: no rerun
    changed = {"seed": 42, "evaluate": {"threshold": "sensitivity"}}
    runners.params_marker("evaluate@lr", changed, values, state=tmp_path)
    assert os.stat(path).st_mtime > 1000  # differs from dvc.lock: newer than the outputs


def test_dvc_lock_params_reads_each_stage(tmp_path):
    lock = {"schema": "2.0", "stages": {"train@lr": {"cmd": "x", "params": {"params.yaml": {"seed": 1}}}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert runners.dvc_lock_params(tmp_path / "dvc.lock") == {"train@lr": {"seed": 1}}
    assert runners.dvc_lock_params(tmp_path / "missing.lock") == {}
    (tmp_path / "bad.lock").write_text("{ not yaml")
    assert runners.dvc_lock_params(tmp_path / "bad.lock") == {}


def test_a_dead_owners_lock_is_released_and_a_live_ones_kept(tmp_path):
    state, locks = tmp_path / "state", tmp_path / "locks"
    locks.mkdir()
    (locks / "0.input.lock").write_text("data/raw\n")
    runners.record_lock_owner(state)  # this process: alive
    assert runners.release_stale_lock(state, locks) is False and locks.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (state / "lock-owner").write_text(f"{int(dead.stdout)} 12345.0")
    assert runners.release_stale_lock(state, locks) is True and not locks.exists()


def test_a_lock_newer_than_its_owner_record_is_left_alone(tmp_path):
    """A run that took the lock but has not reached onstart yet: its record is the previous run's."""
    state, locks = tmp_path / "state", tmp_path / "locks"
    state.mkdir()
    (state / "lock-owner").write_text("999999 1.0")
    os.utime(state / "lock-owner", (1000, 1000))
    locks.mkdir()
    assert runners.release_stale_lock(state, locks) is False and locks.exists()
    (state / "lock-owner").unlink()
    assert runners.release_stale_lock(state, locks) is False and locks.exists()  # no record: not ours to judge


def test_benchmark_file_names_the_rules_benchmark():
    assert runners.benchmark_file("compare") == "logs/benchmarks/compare.tsv"
    assert runners.benchmark_file("train@logreg") == "logs/benchmarks/train/logreg.tsv"
    assert runners.benchmark_file("train@{variant}") == "logs/benchmarks/train/{variant}.tsv"  # the rule's pattern


def test_outputs_are_dated_in_dag_order_with_snakemakes_timestamp_and_benchmark_files(tmp_path):
    """What a Snakemake run leaves beside DVC's outputs is dated with them: a directory output's
    .snakemake_timestamp (Snakemake's mtime for the folder) and the job's benchmark file (one of its outputs
    for Snakemake). Left old, they made every job look older than its checked-out or committed inputs."""
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "make": {"cmd": "x", "outs": ["data/made"]},
        "use": {"foreach": ["a"], "do": {"cmd": "y", "deps": ["data/made"], "outs": ["out/${item}.txt"]}},
    }}))
    (tmp_path / "data" / "made").mkdir(parents=True)
    (tmp_path / "data" / "made" / "file").write_text("1")
    (tmp_path / "data" / "made" / ".snakemake_timestamp").write_text("")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("2")
    for job in ("make", "use@a"):
        bench = tmp_path / runners.benchmark_file(job)
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text("s\n1\n")
    runners.date_outputs_in_dag_order(tmp_path, start=1000.0)

    def mtime(path):
        return os.stat(tmp_path / path).st_mtime

    assert mtime("data/made") == mtime("data/made/.snakemake_timestamp") == mtime("logs/benchmarks/make.tsv") == 1000
    assert mtime("out/a.txt") == mtime("logs/benchmarks/use/a.tsv") == pytest.approx(1000 + runners.STEP, abs=1e-6)
    assert mtime("data/made/file") != 1000  # DVC's files inside a folder keep their own
    assert not (tmp_path / "out" / ".snakemake_timestamp").exists()  # none created
