"""End to end: the real snakemake and the real dvc on a tiny synthetic config, in temp dirs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import MOBILENET_WEIGHTS, copy_workflow, run, tiny_params, tool, write_params

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
VARIANTS = ("logreg", "mobilenet_frozen")
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not MOBILENET_WEIGHTS.exists():
        pytest.skip(f"offline MobileNetV2 weights not found at {MOBILENET_WEIGHTS}")
    params = tiny_params()
    smk = copy_workflow(tmp_path_factory.mktemp("snakemake"))
    write_params(smk / "params.yaml", params)
    run([tool("snakemake"), "--cores", "2", "results/all"], cwd=smk)

    dvc = copy_workflow(tmp_path_factory.mktemp("dvc"))
    write_params(dvc / "params.yaml", params)
    run(["git", "init", "-q"], cwd=dvc)
    run([tool("dvc"), "init", "-q"], cwd=dvc)
    run([tool("dvc"), "repro"], cwd=dvc)
    return smk, dvc


def test_snakemake_outputs_are_there_and_sane(runs):
    smk, _ = runs
    for variant in VARIANTS:
        folder = smk / "results" / "variants" / variant
        metrics = json.loads((folder / "metrics.json").read_text())
        for test_set in ("test_natural", "test_balanced"):
            m = metrics[test_set]
            assert 0 <= m["specificity"] <= 1 and 0 <= m["sensitivity"] <= 1 and m["n"] > 10
        roc = pd.read_csv(folder / "plots" / "roc.csv")
        assert list(roc.columns[:2]) == ["fpr", "tpr"] and roc["tpr"].is_monotonic_increasing
        assert (folder / "figures" / "roc.png").stat().st_size > 1000
        assert (smk / "models" / variant / "train.json").exists()
        assert (smk / "logs" / "train" / f"{variant}.log").exists()
    table = pd.read_csv(smk / "results" / "all" / "metrics.csv")
    assert set(table["variant"]) == set(VARIANTS)
    assert (smk / "results" / "all" / "index.html").exists()


def test_image_model_sees_the_planted_signal(runs):
    """The guard against images and labels drifting apart: chance would be 0.5."""
    smk, _ = runs
    metrics = json.loads((smk / "results" / "variants" / "mobilenet_frozen" / "metrics.json").read_text())
    assert metrics["imagenet_weights"] is True
    assert metrics["test_natural"]["roc_auc"] > 0.9, metrics["test_natural"]


def test_both_runners_give_identical_metrics(runs):
    smk, dvc = runs
    for variant in VARIANTS:
        path = f"results/variants/{variant}/metrics.json"
        assert (smk / path).read_bytes() == (dvc / path).read_bytes(), variant
    # and the same model bytes: exact reproduction, not just equal numbers
    model = "models/mobilenet_frozen/model.keras"
    assert (smk / model).read_bytes() == (dvc / model).read_bytes()
    assert (dvc / "dvc.lock").exists()


def test_dvc_experiment_shows_param_and_metric_changes(runs):
    _, dvc = runs
    run(GIT + ["add", "-A"], cwd=dvc)
    run(GIT + ["commit", "-qm", "baseline"], cwd=dvc)
    run([tool("dvc"), "exp", "run", "-S", "evaluate.threshold=sensitivity", "-S", "evaluate.target_sensitivity=0.99"], cwd=dvc)
    params_diff = run([tool("dvc"), "params", "diff", "--json"], cwd=dvc).stdout
    changed = json.loads(params_diff)["params.yaml"]
    assert changed["evaluate.threshold"] == {"old": "youden", "new": "sensitivity"}
    metrics_diff = json.loads(run([tool("dvc"), "metrics", "diff", "--json"], cwd=dvc).stdout)
    thresholds = [k for f in metrics_diff.values() for k in f if k.endswith("test_natural.threshold")]
    assert thresholds, metrics_diff
    run([tool("dvc"), "plots", "diff", "-o", "plots_html"], cwd=dvc)
    assert (dvc / "plots_html" / "index.html").exists()


def test_snakemake_does_not_rerun_after_dvc_checkout(runs):
    _, dvc = runs
    run([tool("dvc"), "checkout", "--force"], cwd=dvc)
    run(["bash", "workflow/scripts/after-dvc-checkout.sh"], cwd=dvc)
    dry = run([tool("snakemake"), "-n", "results/all"], cwd=dvc)
    assert "Nothing to be done" in dry.stdout + dry.stderr
