"""The last lines of a run: what ran, the variant with the highest test ROC AUC, where the report is,
and a warning for every variant whose image model started from random weights.

Printed by Snakemake when a run succeeds (workflow/Snakefile `onsuccess`) and by `skinlesion summary`
(after `dvc repro`). Reads only results/all/metrics.csv, the compare stage's table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def lines(results: str | os.PathLike = "results/all") -> list[str]:
    import pandas as pd

    table_path = Path(results) / "metrics.csv"
    if not table_path.exists():
        return [f"skinlesion: no comparison yet ({table_path} is missing): run `snakemake --cores all results/all`."]
    table = pd.read_csv(table_path)
    natural = table[table["test_set"] == "natural"]
    out = [f"skinlesion: {len(natural)} variant(s) trained and evaluated "
           f"({', '.join(f'{n} {t}' for t, n in natural['task'].value_counts().sort_index().items())})."]
    scored = natural.dropna(subset=["roc_auc"])
    if len(scored):
        best = scored.loc[scored["roc_auc"].idxmax()]
        ci = ""
        if pd.notna(best.get("roc_auc_ci_low")):
            ci = f" (95% CI {best['roc_auc_ci_low']:.3f}-{best['roc_auc_ci_high']:.3f})"
        view = "" if best["task"] == "binary" else ", malignant vs benign as 1 - P(benign)"
        out.append(f"Highest test ROC AUC (natural distribution): {best['variant']} {best['roc_auc']:.3f}{ci}{view}.")
    random = natural[natural["imagenet_weights"].astype(str).str.lower() == "false"]["variant"].tolist()
    for name in random:
        out.append(f"WARNING: {name} trained from RANDOM weights (no ImageNet weights were found or downloaded); "
                   f"its results say nothing about transfer learning. See train.weights in params.yaml.")
    out.append(f"Report: {Path(results) / 'index.html'}")
    return out


def print_summary(results: str | os.PathLike = "results/all", stream=None) -> None:
    print("\n".join(lines(results)), file=stream or sys.stderr)
