"""The compare stage: every evaluated variant side by side in results/all/.

    results/all/metrics.csv   one row per variant and test set
    results/all/roc.png       the ROC curves of all binary variants on the natural test set
    results/all/index.html    the report a person opens
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

import pandas as pd

from . import figures
from .io import atomic_path, read_json

log = logging.getLogger(__name__)
COLUMNS = ["roc_auc", "average_precision", "sensitivity", "specificity", "balanced_accuracy",
           "macro_roc_auc_ovr", "accuracy", "threshold", "n"]


def table(results: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, result in results.items():
        for test_set in ("test_natural", "test_balanced"):
            m = result[test_set]
            rows.append({"variant": name, "task": result["task"], "test_set": test_set.removeprefix("test_"),
                         **{c: m.get(c) for c in COLUMNS},
                         "imagenet_weights": result.get("imagenet_weights")})
    return pd.DataFrame(rows)


def run(variant_dirs: list[str | os.PathLike], out: str | os.PathLike) -> pd.DataFrame:
    results = {Path(d).name: read_json(Path(d) / "metrics.json") for d in variant_dirs}
    frame = table(results)
    curves = {}
    for d in variant_dirs:
        name = Path(d).name
        if results[name]["task"] == "binary":
            pred = pd.read_csv(Path(d) / "predictions.csv")
            test = pred[pred["split"] == "test"]
            curves[name] = (test["label"].to_numpy(), test["p_malignant"].to_numpy())
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        frame.to_csv(tmp / "metrics.csv", index=False)
        if curves:
            figures.roc(curves, tmp / "roc.png", "All binary variants: test set (natural distribution)")
        (tmp / "index.html").write_text(_html(frame, bool(curves)), encoding="utf-8")
    log.info("compare: %d variant(s) -> %s\n%s", len(results), out,
             frame[frame["test_set"] == "natural"][["variant", "roc_auc", "sensitivity", "specificity",
                                                   "balanced_accuracy"]].to_string(index=False))
    return frame


def _html(frame: pd.DataFrame, has_roc: bool) -> str:
    warn = ""
    if (frame["imagenet_weights"] == False).any():  # noqa: E712  (None means: not an ImageNet model)
        names = sorted(set(frame.loc[frame["imagenet_weights"] == False, "variant"]))  # noqa: E712
        warn = f"<p><b>Warning:</b> trained from RANDOM weights (no ImageNet weights found): {html.escape(', '.join(names))}</p>"
    img = '<img src="roc.png" alt="ROC curves of all binary variants">' if has_roc else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>skinlesion: comparison of variants</title>"
        "</head><body><h1>Comparison of variants</h1>" + warn
        + frame.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.3f}") + img + "</body></html>\n"
    )
