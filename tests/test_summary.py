"""The run's last lines (skinlesion.summary): what ran, the best variant, the report, and a loud warning for
every image model that trained from random weights."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pandas as pd

from skinlesion import quiet, summary


def _table(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def test_summary_names_the_best_variant_and_warns_on_random_weights(tmp_path):
    _table(tmp_path, [
        {"variant": "logreg", "task": "binary", "test_set": "natural", "roc_auc": 0.71, "roc_auc_ci_low": 0.6,
         "roc_auc_ci_high": 0.8, "imagenet_weights": None},
        {"variant": "resnet50_frozen", "task": "binary", "test_set": "natural", "roc_auc": 0.55,
         "roc_auc_ci_low": 0.5, "roc_auc_ci_high": 0.6, "imagenet_weights": False},
        {"variant": "mobilenet_frozen", "task": "binary", "test_set": "natural", "roc_auc": 0.95,
         "roc_auc_ci_low": 0.9, "roc_auc_ci_high": 0.99, "imagenet_weights": True},
        {"variant": "mobilenet_frozen", "task": "binary", "test_set": "external:x", "roc_auc": 0.99,
         "roc_auc_ci_low": 0.9, "roc_auc_ci_high": 1.0, "imagenet_weights": True},
    ])
    out = io.StringIO()
    summary.print_summary(tmp_path, stream=out)
    text = out.getvalue()
    assert "3 variant(s) trained and evaluated (3 binary)" in text  # external rows are not variants
    assert "Highest test ROC AUC (natural distribution): mobilenet_frozen 0.950 (95% CI 0.900-0.990)" in text
    warnings = [line for line in text.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "resnet50_frozen trained from RANDOM weights" in warnings[0]
    assert text.rstrip().endswith(f"Report: {tmp_path / 'index.html'}")


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
