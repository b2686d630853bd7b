"""skinlesion.runners: the params markers' dates and the stale-lock rule, without running a runner."""

from __future__ import annotations

import os
import subprocess
import sys

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
