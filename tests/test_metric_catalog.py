"""skinlesion.metric_catalog, the one declaration of the metrics, against itself and the committed results.

The committed baseline (results/variants/*/evaluation.json, metrics.json and results/all/metrics.csv) is
what the evaluation code produced: every metric key in it must be declared, and the lists derived from the
catalog must give back exactly the committed metrics.csv and metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from skinlesion import compare, evaluation
from skinlesion import metric_catalog as catalog
from skinlesion.io import read_json, write_json

REPO = Path(__file__).resolve().parents[1]
VARIANTS = list(yaml.safe_load((REPO / "params.yaml").read_text())["variants"])  # metrics.csv's row order
HAVE_BASELINE = (REPO / "results/all/metrics.csv").exists() and all(
    (REPO / f"results/variants/{n}/evaluation.json").exists() for n in VARIANTS)
baseline = pytest.mark.skipif(not HAVE_BASELINE, reason="no committed baseline in results/")


def evaluations() -> dict[str, dict]:
    return {n: read_json(REPO / f"results/variants/{n}/evaluation.json") for n in VARIANTS}


def blocks(result: dict):
    """(block kind, metric block) of every set of an evaluation.json, a multiclass variant's view included."""
    sets = [result[k] for k in ("test_natural", "val")] + list((result.get("external") or {}).values())
    for block in sets:
        yield result["task"], block
        if isinstance(block.get("malignant_vs_benign"), dict):
            yield catalog.VIEW, block["malignant_vs_benign"]


def undeclared(block: dict, kind: str) -> list[str]:
    """Keys of a metric block that are neither a declared metric of that kind (or its interval) nor INTERNAL."""
    wrong = []
    for key in block:
        metric = catalog.BY_KEY.get(key.removesuffix("_ci95"))
        if key in catalog.INTERNAL:
            continue
        if metric is None or kind not in metric.tasks or metric.source != catalog.IN_BLOCK:
            wrong.append(key)
        elif key.endswith("_ci95") and not metric.ci:
            wrong.append(key)
    return wrong


def test_keys_are_declared_once():
    keys = [m.key for m in catalog.CATALOG]
    assert len(keys) == len(set(keys))
    assert not set(keys) & set(catalog.INTERNAL) and not set(keys) & set(catalog.CSV_OTHER)


def contiguous(positions: list[int]) -> bool:
    return sorted(positions) == list(range(1, len(positions) + 1))


def test_positions_number_each_output_without_gap_or_repeat():
    """A forgotten or doubled number would drop or reorder a column silently; here it fails."""
    ms = catalog.CATALOG
    assert contiguous([m.csv for m in ms if m.csv is not None] + list(catalog.CSV_OTHER.values()))
    assert contiguous([m.csv_ci for m in ms if m.csv_ci is not None])
    assert contiguous([m.column for m in ms if m.column is not None])
    for block in catalog.EVERY_BLOCK:
        assert contiguous([m.headline[block] for m in ms if block in m.headline]), block


def test_each_declaration_is_consistent():
    for m in catalog.CATALOG:
        assert m.label and m.description, m.key
        assert m.direction in (catalog.HIGHER, catalog.LOWER, catalog.NEITHER), m.key
        assert m.tasks and set(m.tasks) <= set(catalog.EVERY_BLOCK), m.key
        assert m.digits is None or m.digits > 0, m.key
        assert m.source in (catalog.IN_BLOCK, catalog.FROM_PREVALENCES, catalog.FROM_TRANSFER), m.key
        assert set(m.rows) <= {catalog.BINARY, catalog.MULTICLASS} and set(m.rows) <= set(m.tasks), m.key
        assert set(m.headline) <= set(m.tasks) and set(m.headline_ci) <= set(m.headline), m.key
        assert m.ci or not (m.headline_ci or m.csv_ci), m.key  # an interval shown is one evaluation.json has
        assert m.csv is not None or m.source == catalog.IN_BLOCK, m.key  # derived for metrics.csv: must be in it
        assert m.csv is not None or m.column is not None or m.rows or m.headline, f"{m.key} appears nowhere"


def test_undeclared_keys_are_found():
    """The check below can fail: a key nobody declared, or an interval of a metric declared without one."""
    block = {"roc_auc": 0.8, "roc_auc_ci95": None, "brand_new_score": 0.5, "threshold_ci95": None,
             "macro_roc_auc_ovr": 0.9, "recall": {}}
    assert undeclared(block, catalog.BINARY) == ["brand_new_score", "threshold_ci95", "macro_roc_auc_ovr"]


@baseline
def test_every_metric_the_evaluation_produced_is_declared():
    for name, result in evaluations().items():
        for kind, block in blocks(result):
            assert undeclared(block, kind) == [], (name, kind)
            calibrated = result["calibration"]["method"] != "none"
            for m in catalog.CATALOG:
                if kind not in m.tasks or m.source != catalog.IN_BLOCK:
                    continue
                if m.key == "ece_uncalibrated" and not calibrated:
                    continue  # only written with evaluate.calibration
                assert m.key in block, (name, kind, m.key)
                assert (f"{m.key}_ci95" in block) == m.ci, (name, kind, m.key)
                if m.digits is None:
                    assert isinstance(block[m.key], int), (name, kind, m.key)


@baseline
def test_derived_columns_give_the_committed_metrics_csv_header():
    header = (REPO / "results/all/metrics.csv").read_text().splitlines()[0].split(",")
    derived = (["variant", "task", "test_set"] + catalog.csv_columns()
               + [f"{k}_ci_{end}" for k in catalog.csv_intervals() for end in ("low", "high")] + ["binary_score"])
    assert header == derived


@baseline
def test_compare_table_gives_back_the_committed_metrics_csv():
    """compare.table on the committed evaluations is the committed metrics.csv, byte for byte."""
    frame = compare.table(evaluations())
    assert frame.to_csv(index=False) == (REPO / "results/all/metrics.csv").read_text()


@baseline
def test_headline_gives_back_the_committed_metrics_json(tmp_path):
    for name, result in evaluations().items():
        committed = (REPO / f"results/variants/{name}/metrics.json").read_text()
        write_json(tmp_path / "metrics.json", evaluation.headline(result))
        assert (tmp_path / "metrics.json").read_text() == committed, name
        block = json.loads(committed)["test_natural"]
        assert list(block) == sorted(catalog.headline_keys(result["task"])
                                     + (["malignant_vs_benign"] if result["task"] != "binary" else [])), name
        if result["task"] != "binary":
            assert sorted(block["malignant_vs_benign"]) == sorted(catalog.headline_keys(catalog.VIEW)), name
