"""Classification metrics for the evaluate stage; thresholds are chosen on validation, never on test."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, method: str = "youden", target_sensitivity: float = 0.9) -> float:
    """Youden's J (max sensitivity + specificity - 1), or the highest threshold reaching a sensitivity."""
    if len(np.unique(y_val)) < 2:
        return 0.5
    fpr, tpr, thresholds = skm.roc_curve(y_val, p_val)
    thresholds = np.clip(thresholds, 0.0, 1.0)
    if method == "sensitivity":
        ok = np.flatnonzero(tpr >= target_sensitivity)
        return float(thresholds[ok[0]])
    return float(thresholds[np.argmax(tpr - fpr)])


def _r(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def binary(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "n_malignant": int(y.sum()),
        "roc_auc": _r(skm.roc_auc_score(y, p)) if both else None,
        "average_precision": _r(skm.average_precision_score(y, p)) if both else None,
        "accuracy": _r((tp + tn) / len(y)),
        "sensitivity": _r(tp / (tp + fn)) if tp + fn else None,
        "specificity": _r(tn / (tn + fp)) if tn + fp else None,
        "balanced_accuracy": _r(skm.balanced_accuracy_score(y, pred)) if both else None,
        "threshold": _r(threshold),
    }


def multiclass(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict:
    """Metrics over the classes present in y; absent classes are named as absent, not scored."""
    pred = p.argmax(axis=1)
    present = sorted(set(y.tolist()))
    recall = {}
    for i, name in enumerate(classes):
        rows = y == i
        recall[name] = _r((pred[rows] == i).mean()) if rows.any() else "absent"
    aucs = {}
    for i in present:
        onehot = (y == i).astype(int)
        if 0 < onehot.sum() < len(y):
            aucs[classes[i]] = _r(skm.roc_auc_score(onehot, p[:, i]))
    return {
        "n": int(len(y)),
        "accuracy": _r((pred == y).mean()),
        "balanced_accuracy": _r(np.mean([(pred[y == i] == i).mean() for i in present])),
        "macro_roc_auc_ovr": _r(np.mean(list(aucs.values()))) if aucs else None,
        "roc_auc_ovr": aucs,
        "recall": recall,
        "absent_classes": [classes[i] for i in range(len(classes)) if i not in present],
    }


def balanced_subset(y: np.ndarray, seed: int) -> np.ndarray:
    """Rows of a test set with every present class cut to the size of the smallest (seeded)."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    n = counts.min()
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in classes]))
