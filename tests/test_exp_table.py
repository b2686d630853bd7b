"""`make exp-show` (workflow/scripts/exp-table.py): the experiments table that fits 200 columns (issue 21
item 5). `dvc exp show` on the repository's params.yaml is thousands of characters wide; this view is a
row per variant (its headline metric, from the same `dvc exp show --json`) and a column per experiment,
then the params that differ. The experiment columns after `dvc exp run -S` are checked in test_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tool_env

SCRIPT = REPO / "workflow" / "scripts" / "exp-table.py"


def _table(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=tool_env())  # dvc from this environment
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.fixture(scope="module")
def lines():
    if not (REPO / ".git").exists():
        pytest.skip("dvc exp show needs the git repository")
    return _table()


def test_every_variant_has_a_row_with_its_committed_headline(lines):
    variants = list(yaml.safe_load((REPO / "params.yaml").read_text())["variants"])
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line and line.split()[0] in variants}
    assert list(rows) == variants  # params.yaml's order
    for variant, cells in rows.items():
        metrics = json.loads((REPO / "results" / "variants" / variant / "metrics.json").read_text())["test_natural"]
        value = metrics.get("roc_auc", metrics.get("malignant_vs_benign", {}).get("roc_auc"))
        assert cells[0] == f"{value:.4f}", (variant, cells, value)  # the workspace column


def test_it_fits_200_columns(lines):
    assert lines[0].split()[:2] == ["test_natural.roc_auc", "workspace"]
    assert max(len(line) for line in lines) <= 200


def test_a_metric_no_variant_has_shows_dashes():
    out = _table("--metric", "test_natural.no_such_metric")
    assert all(line.split()[1:] == ["-"] * len(line.split()[1:]) for line in out[1:16] if line), out
