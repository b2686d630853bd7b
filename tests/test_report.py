"""evaluate -> compare on a tiny synthetic run: metrics.json, plot data, figures, and the HTML report
(opened in a real headless browser when chromium is installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from skinlesion import compare, metrics  # noqa: E402
from skinlesion.io import read_json, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "lr": {"kind": "logreg", "task": "binary"},
    "lr_five": {"kind": "logreg", "task": "multiclass"},
    "tiny_cnn": {"kind": "cnn", "task": "binary", "filters": [4], "dense_units": 8, "epochs": 2},
}
OLD_KEYS = ["n", "n_malignant", "roc_auc", "average_precision", "accuracy", "sensitivity", "specificity",
            "balanced_accuracy", "threshold"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """fetch -> metadata -> images -> train -> evaluate (-> compare) in-process, on 50 synthetic patients."""
    from skinlesion import evaluation, images, metadata, sources, training

    root = tmp_path_factory.mktemp("pipeline")
    params = {"seed": 5, "data": {"source": "synthetic", "synthetic": {"n_patients": 50, "image_size": 32}},
              "metadata": {}, "split": {"val": 0.25, "test": 0.25},
              "images": {"size": 32, "shard_size": 64, "workers": 1},
              "train": {"learning_rate": 0.01, "batch_size": 16, "epochs": 2, "patience": 2},
              "evaluate": {"threshold": "youden", "bootstrap": 200, "calibration": "temperature",
                           "gradcam_per_outcome": 1},
              "variants": VARIANTS}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    table, shards = root / "data/interim/metadata.parquet", root / "data/processed/shards"
    sources.fetch(params, root / "data/raw")
    metadata.run(root / "data/raw", table, params)
    images.run(table, root / "data/raw", shards, params)
    for name in VARIANTS:
        training.run(params, name, table, shards, root / "models" / name)
        evaluation.run(params, name, root / "models" / name, table, shards, root / "results/variants" / name)
    return root, params


def result_dirs(root: Path) -> list[Path]:
    return [root / "results/variants" / name for name in VARIANTS]


@pytest.fixture(scope="module")
def report(run):
    root, _ = run
    out = root / "results/all"
    compare.run(result_dirs(root), out, params_path=root / "params.yaml", raw_dir=root / "data/raw",
                summary_path=root / "data/interim/metadata_summary.json")
    return out


def test_metrics_keep_their_keys_and_gain_intervals(run):
    root, _ = run
    m = read_json(root / "results/variants/lr/evaluation.json")
    assert "test_balanced" not in m  # issue 11: replaced by PPV / NPV at stated prevalences
    for test_set in ("test_natural", "val"):
        block = m[test_set]
        assert set(OLD_KEYS) <= set(block)
        assert {"ppv_at_50_prevalence", "npv_at_50_prevalence", "ppv_at_train_prevalence",
                "npv_at_train_prevalence"} <= set(block)
        for key in ("pauc_above_80_tpr", "sensitivity_at_90_specificity", "sensitivity_at_95_specificity",
                    "specificity_at_90_sensitivity", "specificity_at_95_sensitivity", "ece", "ece_uncalibrated"):
            assert key in block, key
        if block["roc_auc"] is not None:
            assert 0 <= block["pauc_above_80_tpr"] <= 0.2
            ci = block["roc_auc_ci95"]
            assert ci["low"] <= block["roc_auc"] <= ci["high"]
    assert m["bootstrap"]["replicates"] == 200 and m["calibration"]["method"] == "temperature"
    decision = read_json(root / "bundles/lr/bundle.json")["decision"]  # what predict applies
    assert decision["threshold"] == pytest.approx(m["test_natural"]["threshold"], abs=1e-6)
    assert decision["temperature"] == m["calibration"]["temperature"] > 0


def test_threshold_is_chosen_on_calibrated_validation_scores(run):
    root, params = run
    m = read_json(root / "results/variants/lr/evaluation.json")
    pred = pd.read_csv(root / "results/variants/lr/predictions.csv")
    val = pred[pred["split"] == "val"]
    expected = metrics.choose_threshold(val["label"].to_numpy(), val["p_malignant_calibrated"].to_numpy(), "youden")
    assert m["test_natural"]["threshold"] == pytest.approx(expected, abs=1e-6)
    test = pred[pred["split"] == "test"]
    assert (test["predicted"] == (test["p_malignant_calibrated"] >= expected - 1e-6)).all()


def test_multiclass_metrics_and_the_malignancy_view(run):
    root, _ = run
    m = read_json(root / "results/variants/lr_five/evaluation.json")
    natural = m["test_natural"]
    assert {"balanced_accuracy", "macro_roc_auc_ovr", "recall", "absent_classes", "ece"} <= set(natural)
    assert set(natural["recall"]) == {"benign", "basal_cell_carcinoma", "melanoma", "melanoma_metastasis",
                                      "squamous_cell_carcinoma"}
    assert "roc_auc" in natural["malignant_vs_benign"] and "pauc_above_80_tpr" in natural["malignant_vs_benign"]
    assert read_json(root / "bundles/lr_five/bundle.json")["decision"]["threshold"] is None


def test_every_declared_dvc_plot_exists_for_every_variant(run):
    root, _ = run
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    for entry in stage["plots"]:
        (template, spec), = entry.items()
        assert spec.get("cache") is False
        for name in VARIANTS:
            path = root / template.replace("${key}", name)
            assert path.exists(), f"{path} declared in dvc.yaml but not written for {name}"
            frame = pd.read_csv(path)
            for axis in ("x", "y"):
                if axis in spec:
                    assert spec[axis] in frame.columns, (path, spec[axis])


def test_figures_per_variant(run):
    root, _ = run
    figs = {name: {p.name for p in (root / "results/variants" / name / "figures").glob("*.png")} for name in VARIANTS}
    for name, found in figs.items():
        assert {"roc.png", "pr.png", "confusion.png", "reliability.png"} <= found, name
    assert "training.png" not in figs["lr"]  # header-only history: no empty figure
    assert {"training.png", "gradcam.png"} <= figs["tiny_cnn"]
    assert "gradcam.png" not in figs["lr"]
    for path in (root / "results/variants").rglob("*.png"):
        with Image.open(path) as image:
            assert image.size[0] > 200


def test_metrics_json_is_the_headline_of_evaluation_json(run):
    """DVC lists metrics.json (a few keys per variant); evaluation.json keeps everything, and agrees."""
    from skinlesion.evaluation import HEADLINE

    root, _ = run
    for variant, task in (("lr", "binary"), ("lr_five", "multiclass")):
        folder = root / "results/variants" / variant
        headline, full = read_json(folder / "metrics.json"), read_json(folder / "evaluation.json")
        assert list(headline) == ["test_natural"]
        block = headline["test_natural"]
        assert set(HEADLINE[task]) <= set(block) and len(block) <= len(HEADLINE[task]) + 1
        assert all(block[k] == full["test_natural"][k] for k in HEADLINE[task])


def test_evaluation_is_reproducible(run, tmp_path):
    from skinlesion import evaluation

    root, params = run
    again = evaluation.run(params, "lr", root / "models/lr", root / "data/interim/metadata.parquet",
                           root / "data/processed/shards", tmp_path / "lr")
    assert (tmp_path / "lr/evaluation.json").read_bytes() == (root / "results/variants/lr/evaluation.json").read_bytes()
    assert again["test_natural"]["roc_auc_ci95"] is not None or again["test_natural"]["roc_auc"] is None


def test_metrics_csv_keeps_the_old_columns_first(report):
    frame = pd.read_csv(report / "metrics.csv")
    old = ["variant", "task", "test_set"] + compare.COLUMNS + ["imagenet_weights"]
    assert list(frame.columns[:len(old)]) == old
    assert {"roc_auc_ci_low", "roc_auc_ci_high", "pauc_above_80_tpr", "ece"} <= set(frame.columns)
    assert len(frame) == len(VARIANTS)  # one test set each (no balanced subsample, no external set here)
    assert set(frame["test_set"]) == {"natural"}
    assert (report / "roc.png").exists()


def test_report_is_self_contained_and_complete(run, report):
    root, _ = run
    page = (report / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    n_figures = sum(len(list((d / "figures").glob("*.png"))) for d in result_dirs(root))
    assert len(sources) == n_figures + 1  # + the overview ROC
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*>|@import|url\(\s*['\"]?http", page)
    rows = re.search(r'<table class="sortable" id="comparison-table">.*?</table>', page, re.S).group(0)
    assert rows.count("<tr") == 1 + len(VARIANTS)
    assert 'id="transfer-table"' not in page  # no external set, no threshold-transfer table
    summary = read_json(root / "data/interim/metadata_summary.json")
    for reason in summary["dropped"]:
        assert reason.split(" (")[0] in page
    assert "Synthetic data generated by skinlesion" in page  # attribution
    assert "CC-0" in page and "synthetic" in page  # license, source
    assert "n_patients: 50" in page  # the params file itself
    from skinlesion.stages import code_fingerprint

    assert re.fullmatch(r"[0-9a-f]{64}", code_fingerprint()) and code_fingerprint() in page
    assert "RANDOM weights" not in page  # no transfer model here


def test_random_weights_warning_and_absent_dataset_files(run, tmp_path):
    root, _ = run
    copied = tmp_path / "tiny_cnn"
    shutil.copytree(root / "results/variants/tiny_cnn", copied)
    m = read_json(copied / "evaluation.json")
    m["imagenet_weights"] = False
    write_json(copied / "evaluation.json", m)
    out = tmp_path / "all"
    compare.run([root / "results/variants/lr", copied], out, params_path=tmp_path / "absent.yaml",
                raw_dir=tmp_path / "no-raw", summary_path=tmp_path / "no-summary.json")
    page = (out / "index.html").read_text(encoding="utf-8")
    warning = re.search(r'<div class="warning" id="random-weights-warning">.*?</div>', page, re.S)
    assert warning and "tiny_cnn" in warning.group(0) and "lr" not in warning.group(0).replace("lrea", "")
    for missing in ("no-summary.json", "source.json", "attribution.txt", "licenses", "absent.yaml"):
        assert missing in page and "was not found" in page


def _browser() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


CHECK = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var loaded = imgs.filter(function (i) {
    return i.src.indexOf("data:image/png;base64,") === 0 && i.complete && i.naturalWidth > 0; }).length;
  var table = document.getElementById("comparison-table");
  var header = table.tHead.rows[0].cells[3];
  function column() { return Array.prototype.map.call(table.tBodies[0].rows,
                                                      function (r) { return r.cells[3].getAttribute("data-sort"); }); }
  header.click(); var asc = column();
  header.click(); var desc = column();
  var marker = document.createElement("pre");
  marker.id = "test-marker";
  marker.textContent = JSON.stringify({images: imgs.length, loaded: loaded, header: header.textContent,
                                       rows: table.tBodies[0].rows.length, asc: asc, desc: desc});
  document.body.appendChild(marker);
});
</script>
"""


@pytest.mark.skipif(_browser() is None, reason="chromium is not installed (apt-get install chromium; "
                                                "listed in .ci/apt-packages.txt)")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    page = (report / "index.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
               "--dump-dom", probe.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="test-marker">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no marker in the dumped DOM; chromium said: {done.stderr[-2000:]}"
    state = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert state["images"] > 0 and state["loaded"] == state["images"]
    assert state["header"].startswith("ROC AUC") and state["rows"] == len(VARIANTS)
    values = [float(v) for v in state["asc"] if v]
    assert values == sorted(values) and len(values) >= len(VARIANTS)
    assert [float(v) for v in state["desc"] if v] == sorted(values, reverse=True)
    assert state["asc"][-1] == "" or all(state["asc"])  # empty cells sort last
    # and a screenshot renders (a real page, not a blank one)
    shot = tmp_path / "shot.png"
    subprocess.run(command[:-2] + ["--window-size=1280,2000", f"--screenshot={shot}", (report / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10
