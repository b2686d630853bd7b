"""End to end: the real snakemake and the real dvc on a tiny synthetic config, in temp dirs.

Also how the two runners see each other in one folder: after `dvc repro`, Snakemake plans exactly the
jobs a params or code edit touches; after `snakemake`, `dvc commit --force` makes `dvc status` clean.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow, dvc_changed, planned, run, tiny_params, tool, write_params

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
VARIANTS = ("logreg", "mobilenet_frozen")
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
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
        evaluation = json.loads((folder / "evaluation.json").read_text())
        for test_set in ("test_natural", "val"):  # issue 11: no class-balanced test set
            m = evaluation[test_set]
            assert 0 <= m["specificity"] <= 1 and 0 <= m["sensitivity"] <= 1 and m["n"] > 10
        headline = json.loads((folder / "metrics.json").read_text())["test_natural"]
        assert headline["roc_auc"] == evaluation["test_natural"]["roc_auc"]
        roc = pd.read_csv(folder / "plots" / "roc.csv")
        assert list(roc.columns[:2]) == ["fpr", "tpr"] and roc["tpr"].is_monotonic_increasing
        assert (folder / "figures" / "roc.png").stat().st_size > 1000
        assert (smk / "models" / variant / "train.json").exists()
        assert not (smk / "models" / variant / "timing.json").exists()  # wall times stay out of the model
        assert (smk / "logs" / "train" / f"{variant}.log").exists()
    table = pd.read_csv(smk / "results" / "all" / "metrics.csv")
    assert set(table["variant"]) == set(VARIANTS)
    assert (smk / "results" / "all" / "index.html").exists()


def test_evaluate_completes_the_model_bundle(runs):
    """bundles/<variant>: train's model, byte for byte, with the threshold evaluate chose on validation."""
    smk, _ = runs
    for variant in VARIANTS:
        bundle = json.loads((smk / "bundles" / variant / "bundle.json").read_text())
        trained = json.loads((smk / "models" / variant / "bundle.json").read_text())
        evaluation = json.loads((smk / "results" / "variants" / variant / "evaluation.json").read_text())
        assert trained["decision"] is None  # evaluation.json rounds what the bundle keeps exact
        assert bundle["decision"]["threshold"] == pytest.approx(evaluation["test_natural"]["threshold"], abs=1e-5)
        mine = ("decision", "files")  # the complete bundle carries the model and seen.json, not train's history
        assert {k: v for k, v in bundle.items() if k not in mine} == {k: v for k, v in trained.items() if k not in mine}
        assert bundle["training_data"]["source"] == "synthetic" and len(bundle["training_data"]["sha256"]) == 64
        model = bundle["model_file"]
        assert bundle["files"] == {model: trained["files"][model], "seen.json": trained["files"]["seen.json"]}
        # what the model saw: every train and validation image once, and their pixels for an image model
        seen = json.loads((smk / "bundles" / variant / "seen.json").read_text())
        n_seen = bundle["training_data"]["n_train"] + bundle["training_data"]["n_val"]
        assert len(seen["isic_id"]) == n_seen and seen["patient_id"]
        assert (len(seen["pixels"]) > 0.9 * n_seen) == (bundle["input"] is not None)
        assert (smk / "bundles" / variant / model).read_bytes() == (smk / "models" / variant / model).read_bytes()


def test_image_model_sees_the_planted_signal(runs):
    """The guard against images and labels drifting apart: chance would be 0.5."""
    smk, _ = runs
    evaluation = json.loads((smk / "results" / "variants" / "mobilenet_frozen" / "evaluation.json").read_text())
    assert evaluation["imagenet_weights"] is True
    assert evaluation["test_natural"]["roc_auc"] > 0.9, evaluation["test_natural"]


def test_snakemake_ends_with_a_summary(runs):
    smk, _ = runs
    out = run([tool("skinlesion"), "summary"], cwd=smk).stdout
    assert "2 variant(s)" in out and "Chosen on validation ROC AUC" in out and "results/all/index.html" in out
    assert "RANDOM" not in out


def test_both_runners_give_identical_metrics_and_model_hashes(runs):
    smk, dvc = runs
    for variant in VARIANTS:
        for name in ("metrics.json", "evaluation.json"):
            path = f"results/variants/{variant}/{name}"
            assert (smk / path).read_bytes() == (dvc / path).read_bytes(), path
    # and the same model bytes: exact reproduction, not just equal numbers
    model = "models/mobilenet_frozen/model.keras"
    assert (smk / model).read_bytes() == (dvc / model).read_bytes()
    # after a snakemake run, one command makes dvc status clean, with the same hashes as dvc repro's
    run(["git", "init", "-q"], cwd=smk)
    run([tool("dvc"), "init", "-q"], cwd=smk)
    run([tool("dvc"), "commit", "--force"], cwd=smk)
    assert dvc_changed(smk) == []
    locks = [yaml.safe_load((d / "dvc.lock").read_text())["stages"] for d in (smk, dvc)]
    for stage in ("images", "train@mobilenet_frozen", "evaluate@mobilenet_frozen"):
        outs = [{o["path"]: o["md5"] for o in lock[stage]["outs"]} for lock in locks]
        assert outs[0] == outs[1], stage


def test_snakemake_plans_exactly_what_a_params_edit_touches_after_dvc_repro(runs):
    _, dvc = runs
    assert planned(dvc) == []
    original = (dvc / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["target_sensitivity"] = 0.8
    write_params(dvc / "params.yaml", params)
    try:
        assert planned(dvc) == ["compare", "evaluate@logreg", "evaluate@mobilenet_frozen"]
        assert dvc_changed(dvc) == ["evaluate@logreg", "evaluate@mobilenet_frozen"]
    finally:
        (dvc / "params.yaml").write_text(original)
    assert planned(dvc) == [] and dvc_changed(dvc) == []


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
    # make exp-show's view: a column for the workspace, the commit and the experiment, the changed params
    table = run([sys.executable, str(REPO / "workflow" / "scripts" / "exp-table.py")], cwd=dvc).stdout.splitlines()
    assert len(table[0].split()) == 4, table  # the metric's name, then workspace, the commit, the experiment
    changed = {line.split()[0]: line.split()[1:] for line in table[table.index("params that differ:") + 1:]}
    assert changed == {"evaluate.target_sensitivity": ["0.9900", "0.9000", "0.9900"],
                       "evaluate.threshold": ["sensitivity", "youden", "sensitivity"]}, table
    assert [line.split()[0] for line in table[1:3]] == ["logreg", "mobilenet_frozen"], table


def test_snakemake_does_not_rerun_after_dvc_checkout(runs):
    _, dvc = runs
    run([tool("dvc"), "checkout", "--force"], cwd=dvc)
    run(["bash", "workflow/scripts/after-dvc.sh"], cwd=dvc)
    assert planned(dvc) == []
    assert dvc_changed(dvc) == []  # Snakemake's timestamp files inside DVC outputs are ignored


def test_a_code_edit_reruns_the_stages_that_run_it_under_both_runners(runs):
    _, dvc = runs
    module = dvc / "src" / "skinlesion" / "metrics.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    assert dvc_changed(dvc) == ["compare", "evaluate@logreg", "evaluate@mobilenet_frozen"]
    assert planned(dvc) == ["compare", "evaluate@logreg", "evaluate@mobilenet_frozen"]
