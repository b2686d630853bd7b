"""The evaluate stage: score val and test, calibrate and pick the threshold on val, measure on two test sets.

    results/variants/<variant>/metrics.json      the headline metrics of the natural test set, with intervals:
                                                 what DVC lists (`dvc metrics`, `dvc exp show`); see HEADLINE
    results/variants/<variant>/evaluation.json   everything: val, test_natural and test_balanced metrics with
                                                 group-bootstrap 95% intervals; calibration; what predict needs
    results/variants/<variant>/plots/            DVC plot data, natural test set: roc.csv, pr.csv (micro-averaged
                                                 one-vs-rest for multiclass), confusion.csv, calibration.csv
                                                 (reliability bins); history.csv (training)
    results/variants/<variant>/predictions.csv   isic_id, group, split, label, probabilities, predicted (val + test)
    results/variants/<variant>/figures/          PNG: roc, pr, confusion, reliability, training, gradcam

With `evaluate.calibration: temperature` the temperature is fitted on val; the threshold is then chosen
on the calibrated val scores and every thresholded metric uses calibrated probabilities (rank metrics
are unchanged by it). docs/evaluation.md explains every number and figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from . import dataset, figures, metrics
from .calibration import Calibrator, ece, reliability
from .io import atomic_path, write_json
from .metadata import NUMERIC
from .metadata import load as load_table
from .predictor import Trained
from .reproducibility import seed_everything

log = logging.getLogger(__name__)
DEFAULTS = {"threshold": "youden", "target_sensitivity": 0.9, "bootstrap": 1000, "calibration": "none",
            "calibration_bins": 10, "gradcam_per_outcome": 2}


# What metrics.json keeps of the natural test set's block, per task: few enough that `dvc exp show`
# stays readable with every variant; the rest is in evaluation.json.
HEADLINE = {
    "binary": ["roc_auc", "roc_auc_ci95", "pauc_above_80_tpr", "average_precision", "sensitivity", "specificity",
               "balanced_accuracy", "ece", "threshold"],
    "multiclass": ["macro_roc_auc_ovr", "macro_roc_auc_ovr_ci95", "macro_average_precision_ovr", "balanced_accuracy",
                   "ece"],
}


def headline(result: dict) -> dict:
    """metrics.json: the headline of evaluation.json (multiclass adds its malignant-vs-benign view)."""
    natural = result["test_natural"]
    block = {k: natural.get(k) for k in HEADLINE[result["task"]]}
    if result["task"] != "binary":
        block["malignant_vs_benign"] = {k: (natural["malignant_vs_benign"] or {}).get(k)
                                        for k in ("roc_auc", "sensitivity", "specificity", "threshold")}
    return {"test_natural": block}


def settings(params: dict) -> dict:
    return {**DEFAULTS, **(params.get("evaluate") or {})}


def _score(trained: Trained, split: dataset.Split) -> np.ndarray:
    images = split.images() if trained.uses_images else None
    return trained.predict(split.table, images)


def imputation_means(table: pd.DataFrame) -> dict:
    """The train means the metadata stage filled missing values with, read back from the table itself.

    A column was imputed when it has no missing value left; its mean is that of train rows whose
    `<column>_missing` flag is false. Recorded in evaluation.json so that predict imputes new metadata
    exactly as training did.
    """
    means = {}
    train = table["split"] == "train"
    for column in NUMERIC:
        if column not in table or table[column].isna().any():
            continue
        observed = train & ~table.get(f"{column}_missing", pd.Series(False, index=table.index)).astype(bool)
        mean = table.loc[observed, column].mean()
        means[column] = None if np.isnan(mean) else round(float(mean), 6)
    return means


@dataclass
class Scores:
    """A split's rows, labels, group codes, model probabilities (raw) and calibrated probabilities (p)."""

    table: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray
    raw: np.ndarray
    p: np.ndarray

    @classmethod
    def of(cls, split: dataset.Split, task: str, raw: np.ndarray, calibrate: Calibrator) -> "Scores":
        groups = metrics.group_codes(split.table["group"].to_numpy(), len(split))
        return cls(split.table, split.labels(task), groups, raw, calibrate(raw))

    def subset(self, rows: np.ndarray) -> "Scores":
        return Scores(self.table.iloc[rows].reset_index(drop=True), self.y[rows],
                      metrics.group_codes(self.groups[rows], len(rows)), self.raw[rows], self.p[rows])


def run(params: dict, name: str, model_dir, table, shards, out) -> dict:
    seed = params["seed"]
    cfg = settings(params)
    trained = Trained(model_dir)
    seed_everything(seed, tensorflow=trained.kind != "logreg")
    splits = dataset.load_splits(table, shards, trained.task)
    val_split, test_split = splits["val"], splits["test"]
    raw_val, raw_test = _score(trained, val_split), _score(trained, test_split)
    y_val = val_split.labels(trained.task)
    calibrate = Calibrator.fit(cfg["calibration"], y_val, raw_val)
    val = Scores.of(val_split, trained.task, raw_val, calibrate)
    test = Scores.of(test_split, trained.task, raw_test, calibrate)
    balanced = test.subset(metrics.balanced_subset(test.y, seed))
    sets = {"test_natural": test, "test_balanced": balanced, "val": val}
    n_boot, bins = int(cfg["bootstrap"]), int(cfg["calibration_bins"])

    result = {"variant": name, "task": trained.task, "kind": trained.kind,
              "imagenet_weights": trained.info.get("imagenet_weights"), "weights": trained.info.get("weights"),
              "bootstrap": {"replicates": n_boot, "unit": "group (patient or lesion)", "level": metrics.CI_LEVEL,
                            "seed": seed},
              "calibration": {"method": calibrate.method, "temperature": calibrate.temperature, "bins": bins,
                              "fitted_on": "val"}}
    if trained.task == "binary":
        threshold = metrics.choose_threshold(val.y, val.p, cfg["threshold"], cfg["target_sensitivity"])
        for key, s in sets.items():
            result[key] = metrics.binary(s.y, s.p, threshold, s.groups, n_boot, seed)
        pred_test = (test.p >= threshold).astype(int)
    else:
        threshold = None
        for key, s in sets.items():
            block = metrics.multiclass(s.y, s.p, trained.classes, s.groups, n_boot, seed)
            block["malignant_vs_benign"] = None  # filled below, with its own validation threshold
            result[key] = block
        # The five-class model also gives a malignancy score, 1 - P(benign): the binary question.
        t_mal = metrics.choose_threshold((val.y != 0).astype(int), 1 - val.p[:, 0], cfg["threshold"],
                                         cfg["target_sensitivity"])
        for key, s in sets.items():
            result[key]["malignant_vs_benign"] = metrics.binary((s.y != 0).astype(int), 1 - s.p[:, 0], t_mal,
                                                                s.groups, n_boot, seed)
        pred_test = test.p.argmax(axis=1)
    for key, s in sets.items():
        result[key]["ece"] = metrics._r(ece(s.y, s.p, bins))
        if calibrate.method != "none":
            result[key]["ece_uncalibrated"] = metrics._r(ece(s.y, s.raw, bins))
    result["predict"] = {"threshold": threshold, "calibration": calibrate.method,
                         "temperature": calibrate.temperature, "classes": trained.classes,
                         "imputation_means_train": imputation_means(load_table(table))}

    with atomic_path(out) as tmp:
        (tmp / "plots").mkdir(parents=True)
        (tmp / "figures").mkdir()
        _plots_and_figures(tmp, name, trained, test, balanced, result, pred_test, bins)
        if trained.uses_images and int(cfg["gradcam_per_outcome"]) > 0:
            _gradcam(tmp, name, trained, test_split, test, threshold, int(cfg["gradcam_per_outcome"]), seed)
        _predictions(tmp, trained, val, test, threshold, calibrate)
        _history(tmp, name, Path(model_dir) / "history.csv")
        write_json(tmp / "evaluation.json", result)
        write_json(tmp / "metrics.json", headline(result))
    natural = result["test_natural"]
    log.info("evaluate %s: test (natural) %s", name,
             {k: natural[k] for k in ("roc_auc", "pauc_above_80_tpr", "sensitivity", "specificity", "balanced_accuracy",
                                      "macro_roc_auc_ovr", "ece") if k in natural})
    return result


def _curves(out: Path, y, p) -> None:
    fpr, tpr, thr = skm.roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(thr, 0, 1)}).round(6).to_csv(
        out / "plots" / "roc.csv", index=False)
    precision, recall, _ = skm.precision_recall_curve(y, p)
    pd.DataFrame({"recall": recall, "precision": precision}).round(6).to_csv(out / "plots" / "pr.csv", index=False)


def _ci_text(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci95")
    value = m.get(key)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci['low']:.2f}-{ci['high']:.2f}]" if ci else "")


def _plots_and_figures(out: Path, name: str, trained: Trained, test: Scores, balanced: Scores, result: dict,
                       pred: np.ndarray, bins: int) -> None:
    classes, fig_dir = trained.classes, out / "figures"
    natural_m = result["test_natural"]
    if trained.task == "binary":
        _curves(out, test.y, test.p)
        curves = {f"natural test set, AUC {_ci_text(natural_m, 'roc_auc')}": (test.y, test.p),
                  f"balanced test set, AUC {_ci_text(result['test_balanced'], 'roc_auc')}": (balanced.y, balanced.p)}
        t = natural_m["threshold"]
        op = {f"threshold {t:.3f} from validation: sens {natural_m['sensitivity'] or 0:.2f}, "
              f"spec {natural_m['specificity'] or 0:.2f}": (1 - (natural_m["specificity"] or 0),
                                                            natural_m["sensitivity"] or 0)}
        figures.roc(curves, fig_dir / "roc.png", f"{name}: ROC (95% CI by group bootstrap)", op, show_auc=False)
        figures.pr({"natural test set": (test.y, test.p), "balanced test set": (balanced.y, balanced.p)},
                   fig_dir / "pr.png", f"{name}: precision-recall")
        subtitle = f"threshold {t:.3f}"
        reliability_label = "Predicted P(malignant)"
    else:
        onehot = np.eye(len(classes), dtype=int)[test.y]
        _curves(out, onehot.ravel(), test.p.ravel())  # micro-averaged one-vs-rest
        figures.roc_ovr(test.y, test.p, classes, fig_dir / "roc.png",
                        f"{name}: one-vs-rest ROC (test, natural)")
        y_mal, p_mal = (test.y != 0).astype(int), 1 - test.p[:, 0]
        if len(np.unique(y_mal)) == 2:
            figures.pr({"malignant (any class) vs benign, score 1 - P(benign)": (y_mal, p_mal)},
                       fig_dir / "pr.png", f"{name}: precision-recall, malignant vs benign")
        subtitle = "predicted class = highest probability"
        reliability_label = "Confidence (highest class probability)"
    figures.confusion(test.y, pred, classes, fig_dir / "confusion.png", f"{name}: test set (natural), {subtitle}")
    pd.DataFrame({"actual": [classes[i] for i in test.y], "predicted": [classes[i] for i in pred]}).to_csv(
        out / "plots" / "confusion.csv", index=False)
    table = reliability(test.y, test.p, bins)
    # Empty bins have no mean: left out of the plot data (the counts are in the figure).
    table[table["count"] > 0].round(6).to_csv(out / "plots" / "calibration.csv", index=False)
    tables = {}
    if result["calibration"]["method"] != "none":
        tables[f"before (ECE {natural_m['ece_uncalibrated']:.3f})"] = reliability(test.y, test.raw, bins)
        tables[f"after temperature {result['calibration']['temperature']:.2f} (ECE {natural_m['ece']:.3f})"] = table
    else:
        tables[f"model output (ECE {natural_m['ece']:.3f})"] = table
    figures.reliability(tables, fig_dir / "reliability.png", f"{name}: reliability (test, natural)", reliability_label)


def _gradcam(out: Path, name: str, trained: Trained, split: dataset.Split, test: Scores, threshold,
             per_outcome: int, seed: int) -> None:
    from . import features, gradcam

    if trained.task == "binary":
        y, pred = test.y, (test.p >= threshold).astype(int)
    else:  # outcomes of the malignancy question; the map shows the evidence for the predicted class
        y, pred = (test.y != 0).astype(int), (test.p.argmax(axis=1) != 0).astype(int)
    picked = gradcam.sample_outcomes(y, pred, per_outcome, seed)
    if not picked:
        return
    rows = np.array([i for _, i in picked])
    images = dataset.Split(split.table.iloc[rows].reset_index(drop=True), split.shards_dir).images()
    meta = features.matrix(split.table.iloc[rows], trained.info["features"]) if trained.kind == "dual" else None
    cams, _ = gradcam.heatmaps(trained.model, images, meta)
    items = []
    for (outcome, i), image, cam in zip(picked, images, cams):
        p = test.p[i]
        if trained.task == "binary":
            caption = f"{outcome}\n{split.table['isic_id'].iloc[i]} P(mal)={p:.2f}"
        else:
            caption = (f"{outcome}\n{trained.classes[test.y[i]]} -> {trained.classes[int(p.argmax())]} "
                       f"({p.max():.2f})")
        if not cam.max() > 0:
            caption += "\n(no positive evidence)"
        items.append({"image": image, "overlay": gradcam.overlay(image, cam), "caption": caption})
    figures.image_grid(items, out / "figures" / "gradcam.png",
                       f"{name}: Grad-CAM on a seeded sample of test images (red = strongest evidence)")


def _predictions(out: Path, trained: Trained, val: Scores, test: Scores, threshold, calibrate: Calibrator) -> None:
    predictions = pd.concat([val.table, test.table], ignore_index=True)[["isic_id", "group", "split"]]
    predictions["label"] = np.concatenate([val.y, test.y])
    raw = np.concatenate([val.raw, test.raw])
    p = np.concatenate([val.p, test.p])
    if trained.task == "binary":
        predictions["p_malignant"] = np.round(raw, 6)
        if calibrate.method != "none":
            predictions["p_malignant_calibrated"] = np.round(p, 6)
        predictions["predicted"] = (p >= threshold).astype(int)
    else:
        for i, c in enumerate(trained.classes):
            predictions[f"p_{c}"] = np.round(raw[:, i], 6)
        if calibrate.method != "none":
            for i, c in enumerate(trained.classes):
                predictions[f"p_{c}_calibrated"] = np.round(p[:, i], 6)
        predictions["predicted"] = p.argmax(axis=1)
    predictions.to_csv(out / "predictions.csv", index=False)


def _history(out: Path, name: str, history: Path) -> None:
    """Training history as plot data (always, header-only for epoch-less models) and as a figure (if any)."""
    if not history.exists():
        pd.DataFrame(columns=["epoch", "phase", "loss", "val_loss"]).to_csv(out / "plots" / "history.csv", index=False)
        return
    frame = pd.read_csv(history)
    frame.to_csv(out / "plots" / "history.csv", index=False)
    if len(frame):
        figures.history(frame, out / "figures" / "training.png", f"{name}: training history")
