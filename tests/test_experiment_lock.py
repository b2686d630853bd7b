"""The committed HAM10000 experiment was produced by the code and params in the repository (issue 20 item 4):
every code file and every params value its dvc.lock records is the one committed now. A change to src/ or
to the experiment's params.yaml fails here until the experiment is rerun (`cd experiments/ham10000 && dvc
repro`, about 60 min on 2 cores) and its lock and results committed, with a new entry in
results/test-looks.yaml."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from conftest import REPO

EXPERIMENT = REPO / "experiments" / "ham10000"
LOCK = EXPERIMENT / "dvc.lock"

pytestmark = pytest.mark.skipif(not LOCK.exists(), reason="no committed HAM10000 run")


def _stages() -> dict:
    return yaml.safe_load(LOCK.read_text())["stages"]


def _lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError(dotted)  # a value no params file can hold: never equal
        node = node[part]
    return node


def test_every_code_file_of_the_lock_is_the_committed_one():
    stale = {}
    for stage, entry in _stages().items():
        for dep in entry.get("deps", []):
            path = (EXPERIMENT / dep["path"]).resolve()
            if not dep["path"].startswith("../../"):
                continue  # data inside the experiment: not committed, checked by dvc status there
            md5 = hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None
            if md5 != dep.get("md5"):
                stale.setdefault(dep["path"], []).append(stage)
    assert not stale, (f"experiments/ham10000/dvc.lock is older than the code: {len(stale)} files differ "
                       f"({', '.join(sorted(stale)[:5])}); rerun the experiment and commit its lock and results")


def test_every_params_value_of_the_lock_is_the_committed_one():
    params = yaml.safe_load((EXPERIMENT / "params.yaml").read_text())
    changed = sorted({key for entry in _stages().values()
                      for key, value in (entry.get("params") or {}).get("params.yaml", {}).items()
                      if _lookup(params, key) != value})
    assert not changed, f"experiments/ham10000/params.yaml differs from its dvc.lock at {changed}: rerun the experiment"
