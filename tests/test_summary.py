"""The run's last lines (skinlesion.summary): what ran, the variant chosen on validation, the report, and a loud warning for
every image model that trained from random weights."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pandas as pd

from skinlesion import quiet, summary


def _table(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def _validation(results, variant, auc, low, high, task="binary"):
    """results/variants/<variant>/evaluation.json beside results/all, with only its validation block."""
    block = {"roc_auc": auc, "roc_auc_ci95": {"low": low, "high": high}}
    folder = results.parent / "variants" / variant
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(
        {"val": block if task == "binary" else {"malignant_vs_benign": block}}))


def test_summary_chooses_on_validation_and_warns_on_random_weights(tmp_path):
    """The best TEST variant (mobilenet_frozen) is not the one named: the choice is the validation ROC AUC's
    (multiclass_frozen, through its malignant-vs-benign view); its test and external figures follow; a
    variant whose validation interval overlaps is named as not distinguishable, one whose does not is not."""
    results = tmp_path / "results" / "all"
    _table(results, [
        {"variant": "logreg", "task": "binary", "test_set": "natural", "roc_auc": 0.71, "roc_auc_ci_low": 0.6,
         "roc_auc_ci_high": 0.8, "imagenet_weights": None},
        {"variant": "resnet50_frozen", "task": "binary", "test_set": "natural", "roc_auc": 0.55,
         "roc_auc_ci_low": 0.5, "roc_auc_ci_high": 0.6, "imagenet_weights": False},
        {"variant": "mobilenet_frozen", "task": "binary", "test_set": "natural", "roc_auc": 0.95,
         "roc_auc_ci_low": 0.9, "roc_auc_ci_high": 0.99, "imagenet_weights": True},
        {"variant": "multiclass_frozen", "task": "multiclass", "test_set": "natural", "roc_auc": 0.91,
         "roc_auc_ci_low": 0.85, "roc_auc_ci_high": 0.96, "imagenet_weights": True},
        {"variant": "multiclass_frozen", "task": "multiclass", "test_set": "external:clinic-b", "roc_auc": 0.7,
         "roc_auc_ci_low": 0.6, "roc_auc_ci_high": 0.8, "imagenet_weights": True},
    ])
    _validation(results, "logreg", 0.70, 0.60, 0.79)
    _validation(results, "resnet50_frozen", 0.50, 0.40, 0.60)
    _validation(results, "mobilenet_frozen", 0.88, 0.84, 0.92)
    _validation(results, "multiclass_frozen", 0.90, 0.86, 0.94, task="multiclass")
    out = io.StringIO()
    summary.print_summary(results, stream=out)
    text = out.getvalue()
    assert "4 variant(s) trained and evaluated (3 binary, 1 multiclass)" in text  # external rows are not variants
    assert "Chosen on validation ROC AUC: multiclass_frozen 0.900 (95% CI 0.860-0.940)" in text
    assert "Its ROC AUC on test 0.910 (95% CI 0.850-0.960); clinic-b 0.700 (95% CI 0.600-0.800)." in text
    assert "Not distinguishable from it on validation (95% intervals overlap): mobilenet_frozen." in text
    assert "Highest test" not in text and "logreg" not in text.split("Not distinguishable")[1]
    warnings = [line for line in text.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "resnet50_frozen trained from RANDOM weights" in warnings[0]
    assert text.rstrip().endswith(f"Report: {results / 'index.html'}")


def test_summary_without_validation_blocks_chooses_nothing(tmp_path):
    results = tmp_path / "all"
    _table(results, [{"variant": "logreg", "task": "binary", "test_set": "natural", "roc_auc": 0.71,
                      "roc_auc_ci_low": 0.6, "roc_auc_ci_high": 0.8, "imagenet_weights": None}])
    text = "\n".join(summary.lines(results))
    assert "No variant chosen: no validation ROC AUC" in text and "0.71" not in text


def test_summary_without_a_comparison_says_what_to_run(tmp_path):
    assert "no comparison yet" in summary.lines(tmp_path)[0]


def test_cuda_probe_noise_is_dropped_and_everything_else_kept(tmp_path):
    """On a machine without an NVIDIA driver the filter drops TensorFlow's CUDA-probe lines from fd 2, and
    keeps every other line, in order."""
    if quiet.nvidia_driver_present():
        import pytest

        pytest.skip("an NVIDIA driver is present: nothing is filtered by design")
    code = ("import os, sys\n"
            "from skinlesion import quiet\n"
            "with quiet.cuda_probe_noise_filtered():\n"
            "    os.write(2, b'first real line\\n')\n"
            f"    os.write(2, {quiet.NOISE[1]!r}.encode() + b' (E0000 cuda_executor)\\n')\n"
            f"    os.write(2, b'W0000 ' + {quiet.NOISE[2]!r}.encode() + b': UNKNOWN ERROR (303)\\n')\n"
            "    os.write(2, b'Traceback: a real error\\n')\n")
    env = {k: v for k, v in os.environ.items() if k != "SKINLESION_RAW_STDERR"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["first real line", "Traceback: a real error"]
