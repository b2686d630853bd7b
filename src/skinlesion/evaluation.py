"""The evaluate stage: score val and test, pick the threshold on val, measure on two test sets.

    results/variants/<variant>/metrics.json      test_natural and test_balanced metrics (dvc metrics)
    results/variants/<variant>/plots/            DVC plot data, natural test set: roc.csv, pr.csv (micro-averaged
                                        one-vs-rest for multiclass), confusion.csv; history.csv (training)
    results/variants/<variant>/predictions.csv   isic_id, group, split, label, probabilities (val + test)
    results/variants/<variant>/figures/          PNG figures: ROC, PR, confusion, training curves
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from . import dataset, figures, metrics
from .io import atomic_path, write_json
from .predictor import Trained
from .reproducibility import seed_everything

log = logging.getLogger(__name__)


def _score(trained: Trained, split: dataset.Split) -> np.ndarray:
    images = split.images() if trained.uses_images else None
    return trained.predict(split.table, images)


def run(params: dict, name: str, model_dir, table, shards, out) -> dict:
    seed = params["seed"]
    trained = Trained(model_dir)
    seed_everything(seed, tensorflow=trained.kind != "logreg")
    splits = dataset.load_splits(table, shards, trained.task)
    val, test = splits["val"], splits["test"]
    p_val, p_test = _score(trained, val), _score(trained, test)
    y_val, y_test = val.labels(trained.task), test.labels(trained.task)
    balanced = metrics.balanced_subset(y_test, seed)
    cfg = params.get("evaluate", {})

    result = {"variant": name, "task": trained.task, "imagenet_weights": trained.info.get("imagenet_weights"),
              "weights": trained.info.get("weights")}
    with atomic_path(out) as tmp:
        (tmp / "plots").mkdir(parents=True)
        (tmp / "figures").mkdir()
        if trained.task == "binary":
            threshold = metrics.choose_threshold(y_val, p_val, cfg.get("threshold", "youden"),
                                                 cfg.get("target_sensitivity", 0.9))
            result["test_natural"] = metrics.binary(y_test, p_test, threshold)
            result["test_balanced"] = metrics.binary(y_test[balanced], p_test[balanced], threshold)
            result["val"] = metrics.binary(y_val, p_val, threshold)
            _binary_outputs(tmp, name, y_test, p_test, balanced, threshold, trained.classes)
            pred = (p_test >= threshold).astype(int)
            prob_columns = {"p_malignant": np.concatenate([p_val, p_test])}
        else:
            result["test_natural"] = metrics.multiclass(y_test, p_test, trained.classes)
            result["test_balanced"] = metrics.multiclass(y_test[balanced], p_test[balanced], trained.classes)
            result["val"] = metrics.multiclass(y_val, p_val, trained.classes)
            pred = p_test.argmax(axis=1)
            figures.confusion(y_test, pred, trained.classes, tmp / "figures" / "confusion.png",
                              f"{name}: test set (natural distribution)")
            onehot = np.eye(len(trained.classes), dtype=int)[y_test]
            _curves(tmp, onehot.ravel(), p_test.ravel())  # micro-averaged one-vs-rest
            both = np.concatenate([p_val, p_test])
            prob_columns = {f"p_{c}": both[:, i] for i, c in enumerate(trained.classes)}
        names = trained.classes
        pd.DataFrame({"actual": [names[i] for i in y_test], "predicted": [names[i] for i in pred]}).to_csv(
            tmp / "plots" / "confusion.csv", index=False)
        predictions = pd.concat([val.table, test.table], ignore_index=True)[["isic_id", "group", "split"]]
        predictions["label"] = np.concatenate([y_val, y_test])
        for column, values in prob_columns.items():
            predictions[column] = np.round(values, 6)
        predictions.to_csv(tmp / "predictions.csv", index=False)
        history = Path(model_dir) / "history.csv"
        if history.exists():
            frame = pd.read_csv(history)
            frame.to_csv(tmp / "plots" / "history.csv", index=False)
            figures.history(frame, tmp / "figures" / "training.png", f"{name}: training history")
        write_json(tmp / "metrics.json", result)
    natural = result["test_natural"]
    log.info("evaluate %s: test (natural) %s", name,
             {k: natural[k] for k in ("roc_auc", "sensitivity", "specificity", "balanced_accuracy", "macro_roc_auc_ovr")
              if k in natural})
    return result


def _curves(out: Path, y, p) -> None:
    fpr, tpr, thr = skm.roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(thr, 0, 1)}).round(6).to_csv(
        out / "plots" / "roc.csv", index=False)
    precision, recall, _ = skm.precision_recall_curve(y, p)
    pd.DataFrame({"recall": recall, "precision": precision}).round(6).to_csv(out / "plots" / "pr.csv", index=False)


def _binary_outputs(out: Path, name, y, p, balanced, threshold, classes) -> None:
    _curves(out, y, p)
    curves = {"natural test set": (y, p), "balanced test set": (y[balanced], p[balanced])}
    m = metrics.binary(y, p, threshold)
    op = {f"threshold {threshold:.3f} (from validation)": (1 - (m["specificity"] or 0), m["sensitivity"] or 0)}
    figures.roc(curves, out / "figures" / "roc.png", f"{name}: ROC", op)
    figures.pr(curves, out / "figures" / "pr.png", f"{name}: precision-recall")
    figures.confusion(y, (p >= threshold).astype(int), classes, out / "figures" / "confusion.png",
                      f"{name}: test set (natural), threshold {threshold:.3f}")
