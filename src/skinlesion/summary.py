"""The last lines of a run: what ran, the variant chosen on validation with its test and external figures,
where the report is, and a warning for every variant whose image model started from random weights.

The choice is made on the validation split only (docs/evaluation.md, "One look at test"): the variant with
the highest validation ROC AUC (malignant vs benign for a five-class one). Its test figures are reported,
never used to choose. Variants whose validation intervals overlap the chosen one's are named as not
distinguishable from it.

Printed by Snakemake when a run succeeds (workflow/Snakefile `onsuccess`) and by `skinlesion summary`
(after `dvc repro`). Reads results/all/metrics.csv, the compare stage's table, and the validation block of
each variant's results/variants/<variant>/evaluation.json beside it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _validation(variants_dir: Path, variant: str, task: str) -> dict | None:
    """The validation ROC AUC block of one variant (its malignant-vs-benign view when multiclass), or None."""
    try:
        block = json.loads((variants_dir / variant / "evaluation.json").read_text())["val"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if task != "binary":
        block = block.get("malignant_vs_benign") or {}
    if not isinstance(block, dict) or block.get("roc_auc") is None:
        return None
    return block


def _auc(value, low, high) -> str:
    ci = f" (95% CI {low:.3f}-{high:.3f})" if low is not None and high is not None else ""
    return f"{value:.3f}{ci}"


def _ci(block: dict) -> tuple:
    ci = block.get("roc_auc_ci95") or {}
    return ci.get("low"), ci.get("high")


def _chosen(table, variants_dir: Path) -> list[str]:
    import pandas as pd

    natural = table[table["test_set"] == "natural"]
    val = {row.variant: b for row in natural.itertuples()
           if (b := _validation(variants_dir, row.variant, row.task)) is not None}
    if not val:
        return [f"No variant chosen: no validation ROC AUC in {variants_dir}/*/evaluation.json."]
    best = max(val, key=lambda v: val[v]["roc_auc"])  # first in table order on a tie
    row = natural[natural["variant"] == best].iloc[0]
    view = "" if row["task"] == "binary" else " (malignant vs benign as 1 - P(benign))"
    out = [f"Chosen on validation ROC AUC: {best} {_auc(val[best]['roc_auc'], *_ci(val[best]))}{view}."]
    figures = []
    if pd.notna(row.get("roc_auc")):
        figures.append(f"test {_auc(row['roc_auc'], row.get('roc_auc_ci_low'), row.get('roc_auc_ci_high'))}")
    for ext in table[(table["variant"] == best) & table["test_set"].astype(str).str.startswith("external:")].itertuples():
        if pd.notna(ext.roc_auc):
            figures.append(f"{ext.test_set.split(':', 1)[1]} {_auc(ext.roc_auc, ext.roc_auc_ci_low, ext.roc_auc_ci_high)}")
    if figures:
        out.append(f"  Its ROC AUC on {'; '.join(figures)}.")
    low, high = _ci(val[best])
    if low is not None:
        close = [v for v, b in val.items() if v != best and (c := _ci(b))[1] is not None and c[1] >= low]
        if close:
            out.append(f"  Not distinguishable from it on validation (95% intervals overlap): {', '.join(close)}.")
    return out


def lines(results: str | os.PathLike = "results/all") -> list[str]:
    import pandas as pd

    table_path = Path(results) / "metrics.csv"
    if not table_path.exists():
        return [f"skinlesion: no comparison yet ({table_path} is missing): run `snakemake --cores all results/all`."]
    table = pd.read_csv(table_path)
    natural = table[table["test_set"] == "natural"]
    out = [f"skinlesion: {len(natural)} variant(s) trained and evaluated "
           f"({', '.join(f'{n} {t}' for t, n in natural['task'].value_counts().sort_index().items())})."]
    out += _chosen(table, Path(results).parent / "variants")
    random = natural[natural["imagenet_weights"].astype(str).str.lower() == "false"]["variant"].tolist()
    for name in random:
        out.append(f"WARNING: {name} trained from RANDOM weights (no ImageNet weights were found or downloaded); "
                   f"its results say nothing about transfer learning. See train.weights in params.yaml.")
    out.append(f"Report: {Path(results) / 'index.html'}")
    return out


def print_summary(results: str | os.PathLike = "results/all", stream=None) -> None:
    print("\n".join(lines(results)), file=stream or sys.stderr)
