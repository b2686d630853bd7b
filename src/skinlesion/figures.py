"""Matplotlib figures of the evaluation (Agg backend: no display needed)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from .io import atomic_path  # noqa: E402


def save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path, title: str, points: dict | None = None) -> None:
    """One ROC curve per entry of `curves` (label -> (y, p)); optional operating points (fpr, tpr)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (y, p) in curves.items():
        fpr, tpr, _ = skm.roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {skm.roc_auc_score(y, p):.3f})")
    for label, (x, yv) in (points or {}).items():
        ax.plot([x], [yv], "o", label=label)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    save(fig, path)


def pr(curves: dict[str, tuple[np.ndarray, np.ndarray]], path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (y, p) in curves.items():
        precision, recall, _ = skm.precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"{label} (AP {skm.average_precision_score(y, p):.3f}, "
                                         f"prevalence {np.mean(y):.2f})")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title=title, ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    save(fig, path)


def confusion(y: np.ndarray, pred: np.ndarray, classes: list[str], path, title: str) -> None:
    """Counts, with the row-normalised share (recall per true class) under each count."""
    matrix = skm.confusion_matrix(y, pred, labels=list(range(len(classes))))
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=9)
    short = [c.replace("_", " ") for c in classes]
    ax.set_xticks(range(len(classes)), short, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), short)
    ax.set(xlabel="Predicted", ylabel="Actual", title=title)
    save(fig, path)


def history(frame, path, title: str) -> None:
    metric = next((c for c in ("auc", "accuracy") if c in frame), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5, 4), squeeze=False)
    axes[0, 0].plot(frame["epoch"], frame["loss"], label="train")
    axes[0, 0].plot(frame["epoch"], frame["val_loss"], label="validation")
    axes[0, 0].set(xlabel="epoch", ylabel="loss", title=title)
    axes[0, 0].legend()
    if metric:
        axes[0, 1].plot(frame["epoch"], frame[metric], label="train")
        axes[0, 1].plot(frame["epoch"], frame[f"val_{metric}"], label="validation")
        axes[0, 1].set(xlabel="epoch", ylabel=metric)
        axes[0, 1].legend()
    save(fig, path)
