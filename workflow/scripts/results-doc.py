#!/usr/bin/env python3
"""Write the results tables of a docs page from an experiment's committed files, never by hand.

The page keeps its prose; the part between `<!-- results:begin -->` and `<!-- results:end -->` is
generated from experiments/<name>/results/variants/*/{evaluation.json, plots/history.csv} (in git,
pinned by that folder's dvc.lock). tests/test_results_doc.py fails when the page and the files differ.

    python workflow/scripts/results-doc.py experiments/ham10000 docs/results-ham10000.md [--check]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(block: dict, key: str) -> str:
    ci = block.get(f"{key}_ci95") or {}
    value = _f(block.get(key))
    return value if not ci else f"{value} ({_f(ci.get('low'))}–{_f(ci.get('high'))})"


def _epochs(history: Path) -> str:
    """Epochs run per phase ("frozen + fine-tuning" for two-phase variants), from the training history."""
    if not history.exists():
        return "–"
    with history.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return "–"
    phases: dict[str, int] = {}
    for row in rows:
        phases[row.get("phase") or "train"] = phases.get(row.get("phase") or "train", 0) + 1
    return " + ".join(str(n) for n in phases.values())


def tables(experiment: Path) -> str:
    variants = sorted(p for p in (experiment / "results" / "variants").iterdir() if (p / "evaluation.json").exists())
    results = {p.name: json.loads((p / "evaluation.json").read_text()) for p in variants}
    binary = [n for n, r in results.items() if r["task"] == "binary"]
    multi = [n for n, r in results.items() if r["task"] != "binary"]
    out = ["Binary (malignant vs benign). Test: the lesion-grouped test split, natural distribution; sensitivity "
           "and specificity at the threshold chosen on validation; 95% intervals from the group bootstrap.", "",
           "| variant | test ROC AUC (95% CI) | pAUC above 80% TPR | average precision | sensitivity | specificity "
           "| balanced accuracy | ECE | val ROC AUC | epochs run |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name in binary:
        r = results[name]
        t, v = r["test_natural"], r["val"]
        out.append(f"| {name} | {_ci(t, 'roc_auc')} | {_f(t.get('pauc_above_80_tpr'))} | {_f(t.get('average_precision'))} "
                   f"| {_f(t.get('sensitivity'))} | {_f(t.get('specificity'))} | {_f(t.get('balanced_accuracy'))} "
                   f"| {_f(t.get('ece'))} | {_f(v.get('roc_auc'))} | {_epochs(experiment / 'results/variants' / name / 'plots/history.csv')} |")
    if multi:
        out += ["", "Five classes (classes absent from the data are named, not scored). Macro one-vs-rest ROC AUC and "
                "balanced accuracy over the present classes; test recall per class.", "",
                "| variant | test macro ROC AUC (95% CI) | balanced accuracy (95% CI) | malignant vs benign ROC AUC | "
                "val macro ROC AUC | test recall per class | epochs run |",
                "|---|---|---|---|---|---|---|"]
        for name in multi:
            r = results[name]
            t, v = r["test_natural"], r["val"]
            recall = " / ".join(f"{k} {v if isinstance(v, str) else _f(v, 2)}" for k, v in t["recall"].items())
            mal = (t.get("malignant_vs_benign") or {}).get("roc_auc")
            out.append(f"| {name} | {_ci(t, 'macro_roc_auc_ovr')} | {_ci(t, 'balanced_accuracy')} | {_f(mal)} "
                       f"| {_f(v.get('macro_roc_auc_ovr'))} | {recall} "
                       f"| {_epochs(experiment / 'results/variants' / name / 'plots/history.csv')} |")
    return "\n".join(out) + "\n"


def render(page: str, experiment: Path) -> str:
    if BEGIN not in page or END not in page:
        raise SystemExit(f"the page has no {BEGIN} ... {END} section")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{tables(experiment)}{END}{tail}"


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    experiment, page_path = Path(args[0]), Path(args[1])
    page = page_path.read_text(encoding="utf-8")
    new = render(page, experiment)
    if new == page:
        return 0
    if "--check" in argv:
        print(f"{page_path} differs from {experiment}'s results: run {' '.join(['python', sys.argv[0], *args])}",
              file=sys.stderr)
        return 1
    page_path.write_text(new, encoding="utf-8")
    print(f"{page_path}: tables regenerated from {experiment}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
