"""The compare stage: every evaluated variant side by side in results/all/.

    results/all/metrics.csv   one row per variant and test set (test_set "natural": the internal test split;
                              "external:<name>": each external set of evaluate.external), with 95% interval
                              bounds (<metric>_ci_low/high), PPV / NPV at the stated prevalences, and on
                              external rows the threshold transfer (own_threshold, sensitivity / specificity
                              at the set's own, oracle, threshold)
    results/all/roc.png       the ROC curves of all variants on the natural test set (multiclass variants:
                              malignant vs benign, score 1 - P(benign))
    results/all/index.html    the report a person opens: self-contained (figures embedded), sortable table,
                              figures per variant, dataset summary, params and code version
                              (package version and the sha256 of the code every stage ran: a git commit
                              would make equal results differ by commit)

The dataset part reads data/interim/metadata_summary.json and data/raw/{source.json, attribution.txt,
licenses/} where they are; an absent file is named in the report, never an error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from . import __version__, figures, metric_catalog, report, stages
from .report import sections
from .errors import PipelineError
from .io import atomic_path, read_json

log = logging.getLogger(__name__)
# The columns after variant, task, test_set, in their append-only order (skinlesion.metric_catalog):
# the metrics and imagenet_weights, then the 95% interval bounds of those with csv_ci, then binary_score.
VALUES = metric_catalog.csv_columns()
COLUMNS = VALUES[:VALUES.index("imagenet_weights")]  # the original layout, which older readers expect first
WITH_CI = metric_catalog.csv_intervals()
# Binary questions a multiclass variant answers through its malignancy score 1 - P(benign).
BINARY_VIEW = metric_catalog.view_keys()


def _values(m: dict, task: str) -> dict:
    """The metric block with what metrics.csv derives from it: a multiclass variant's binary view, the train
    prevalence, the threshold transfer of an external set."""
    source = dict(m)
    if task != "binary" and isinstance(m.get("malignant_vs_benign"), dict):
        mal = m["malignant_vs_benign"]
        for key in BINARY_VIEW:
            source[key] = mal.get(key)
            source[f"{key}_ci95"] = mal.get(f"{key}_ci95")
        source["prevalences"] = mal.get("prevalences")
    source["train_prevalence"] = (source.get("prevalences") or {}).get("train")
    transfer = m.get("threshold_transfer") or {}
    source["own_threshold"] = transfer.get("own_threshold")
    for key in ("sensitivity", "specificity"):
        own = transfer.get("at_own_threshold") or {}
        source[f"{key}_at_own_threshold"] = own.get(key)
        source[f"{key}_at_own_threshold_ci95"] = own.get(f"{key}_ci95")
    return source


def test_sets(result: dict) -> list[tuple[str, dict]]:
    """(test_set label, metric block): the internal test split, then every external set."""
    return [("natural", result["test_natural"])] + [(f"external:{name}", block)
                                                    for name, block in (result.get("external") or {}).items()]


def table(results: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, result in results.items():
        for test_set, block in test_sets(result):
            source = _values(block, result["task"])
            source["imagenet_weights"] = result.get("imagenet_weights")  # the variant's, on each of its rows
            row = {"variant": name, "task": result["task"], "test_set": test_set, **{c: source.get(c) for c in VALUES}}
            for c in WITH_CI:
                ci = source.get(f"{c}_ci95") or {}
                row[f"{c}_ci_low"], row[f"{c}_ci_high"] = ci.get("low"), ci.get("high")
            row["binary_score"] = "p_malignant" if result["task"] == "binary" else "1 - p_benign"
            rows.append(row)
    return pd.DataFrame(rows)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def dataset_info(raw_dir: str | os.PathLike = "data/raw",
                 summary_path: str | os.PathLike = "data/interim/metadata_summary.json") -> dict:
    """What the report shows about the data; None for each file that is absent (the report says so)."""
    raw = Path(raw_dir)
    licenses_dir = raw / "licenses"
    licenses = None
    if licenses_dir.is_dir():
        licenses = {p.stem: _read_text(p) or "" for p in sorted(licenses_dir.glob("*.txt"))}
    info = {
        "summary_path": str(summary_path), "summary": _read_json(Path(summary_path)),
        "source_path": str(raw / "source.json"), "source": _read_json(raw / "source.json"),
        "attribution_path": str(raw / "attribution.txt"), "attribution": _read_text(raw / "attribution.txt"),
        "licenses_path": str(licenses_dir), "licenses": licenses,
    }
    for key in ("summary", "source", "attribution", "licenses"):
        if info[key] is None:
            log.warning("compare: %s not found; the report says so", info[f"{key}_path"])
    return info


def _figures(variant_dir: Path) -> list[Path]:
    folder = variant_dir / "figures"
    found = sorted(folder.glob("*.png")) if folder.is_dir() else []
    order = {name: i for i, name in enumerate(sections.FIGURE_ORDER)}
    return sorted(found, key=lambda p: (order.get(p.name, len(order)), p.name))


def _binary_scores(variant_dir: Path, task: str):
    pred = pd.read_csv(variant_dir / "predictions.csv")
    test = pred[pred["split"] == "test"]
    if task == "binary":
        return test["label"].to_numpy(), test["p_malignant"].to_numpy()
    if "p_benign" not in test:
        return None
    return (test["label"].to_numpy() != 0).astype(int), 1 - test["p_benign"].to_numpy()


def run(variant_dirs: list[str | os.PathLike], out: str | os.PathLike, params_path: str | os.PathLike | None = None,
        raw_dir: str | os.PathLike = "data/raw",
        summary_path: str | os.PathLike = "data/interim/metadata_summary.json") -> pd.DataFrame:
    dirs = [Path(d) for d in variant_dirs]
    for d in dirs:
        if not (d / "evaluation.json").exists():
            raise PipelineError(f"{d / 'evaluation.json'} not found: run skinlesion evaluate {d.name} first.")
    results = {d.name: read_json(d / "evaluation.json") for d in dirs}
    frame = table(results)
    curves = {}
    for d in dirs:
        scores = _binary_scores(d, results[d.name]["task"])
        if scores is not None and len(set(scores[0].tolist())) == 2:
            label = d.name if results[d.name]["task"] == "binary" else f"{d.name} (1 - P(benign))"
            curves[label] = scores
    variants = [report.Variant(d.name, results[d.name], _figures(d)) for d in dirs]
    provenance = {"params_path": str(params_path) if params_path else "(not given)",
                  "params_text": _read_text(Path(params_path)) if params_path else None,
                  "version": __version__, "code": stages.code_fingerprint()}
    data = dataset_info(raw_dir, summary_path)
    with atomic_path(out, mark="metrics.csv") as tmp:  # a clone's results/all holds the committed metrics.csv
        tmp.mkdir(parents=True)
        frame.to_csv(tmp / "metrics.csv", index=False)
        if curves:
            figures.roc(curves, tmp / "roc.png", "All variants: test set (natural distribution)")
        page = report.render(report.Report(frame, variants, tmp / "roc.png" if curves else None, data, provenance))
        (tmp / "index.html").write_text(page, encoding="utf-8")
    log.info("compare: %d variant(s) -> %s (open %s/index.html)\n%s", len(results), out, out,
             frame[frame["test_set"] == "natural"][["variant", "roc_auc", "pauc_above_80_tpr", "sensitivity",
                                                   "specificity", "balanced_accuracy"]].to_string(index=False))
    return frame
