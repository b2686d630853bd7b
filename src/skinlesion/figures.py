"""Matplotlib figures of the evaluation (Agg backend: no display needed)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from .io import atomic_path  # noqa: E402


def save(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path, title: str, points: dict | None = None,
        show_auc: bool = True) -> None:
    """One ROC curve per entry of `curves` (label -> (y, p)); optional operating points (fpr, tpr).

    The shaded band marks the region the partial AUC (above 80% sensitivity) measures."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.axhspan(0.8, 1.0, color="0.92", zorder=0, label="pAUC region (sensitivity >= 0.8)")
    for label, (y, p) in curves.items():
        fpr, tpr, _ = skm.roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {skm.roc_auc_score(y, p):.3f})" if show_auc else label)
    for label, (x, yv) in (points or {}).items():
        ax.plot([x], [yv], "o", markersize=8, markeredgecolor="black", label=label)
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
    """Two panels: counts, and row-normalised shares (each true class's row sums to 100%: its recall)."""
    matrix = skm.confusion_matrix(y, pred, labels=list(range(len(classes))))
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.2 * k + 2.4), 1.1 * k + 2.2), layout="constrained")
    short = [c.replace("_", " ") for c in classes]
    rows = matrix.sum(axis=1)
    panels = ((axes[0], matrix / max(matrix.max(), 1), lambda i, j: f"{matrix[i, j]}", "counts"),
              (axes[1], share, lambda i, j: f"{share[i, j]:.0%}" if rows[i] else "-",
               "share of each actual class (row = 100%)"))
    for ax, shade, text, subtitle in panels:
        ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, text(i, j), ha="center", va="center", fontsize=9,
                        color="white" if shade[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), short, rotation=30, ha="right")
        ax.set_yticks(range(k), short)
        ax.set(xlabel="Predicted", ylabel="Actual", title=subtitle)
    axes[1].set_ylabel("")
    axes[1].set_yticks(range(k), [""] * k)
    fig.suptitle(title)
    save(fig, path)


def roc_ovr(y: np.ndarray, p: np.ndarray, classes: list[str], path, title: str) -> None:
    """Multiclass: one ROC curve per class present, that class against all others."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for i, name in enumerate(classes):
        onehot = (y == i).astype(int)
        if 0 < onehot.sum() < len(y):
            fpr, tpr, _ = skm.roc_curve(onehot, p[:, i])
            ax.plot(fpr, tpr, label=f"{name.replace('_', ' ')} vs rest (AUC {skm.roc_auc_score(onehot, p[:, i]):.3f}, "
                                    f"n={onehot.sum()})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)", title=title)
    ax.legend(loc="lower right", fontsize=7)
    save(fig, path)


def reliability(tables: dict, path, title: str, xlabel: str) -> None:
    """Reliability diagram: observed frequency against mean predicted probability per bin, with the
    number of cases per bin underneath. `tables`: label -> calibration.reliability() frame."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    width = 1.0 / max(len(next(iter(tables.values()))), 1)
    for k, (label, table) in enumerate(tables.items()):
        used = table["count"] > 0
        ax.plot(table["mean_predicted"][used], table["observed_frequency"][used], "o-", label=label)
        centres = (table["lower"] + table["upper"]) / 2
        offset = (k - (len(tables) - 1) / 2) * width / max(len(tables), 1)
        hist.bar(centres + offset, table["count"], width=width / max(len(tables), 1), alpha=0.7, label=label)
    ax.set(ylabel="Observed frequency", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel=xlabel, ylabel="cases")
    save(fig, path)


def image_grid(items: list[dict], path, title: str, columns: int = 2) -> None:
    """Rows of (image, heat-map overlay) pairs; each item: image, overlay (uint8 RGB), caption."""
    rows = max(1, -(-len(items) // columns))
    # About one screen pixel per image pixel at 80 dpi: sharp, and a few hundred kB rather than megabytes.
    side = max(1.6, items[0]["image"].shape[0] / 80) if items else 1.6
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(side * 2 * columns, (side + 0.4) * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        axes[r, 2 * c].imshow(item["image"])
        axes[r, 2 * c].set_title(item["caption"], fontsize=7)
        axes[r, 2 * c + 1].imshow(item["overlay"])
        axes[r, 2 * c + 1].set_title("Grad-CAM", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path, dpi=80)


def history(frame, path, title: str) -> None:
    metric = next((c for c in ("auc", "accuracy") if c in frame), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5, 4), squeeze=False)
    starts = frame["epoch"][frame["phase"] != frame["phase"].shift()].iloc[1:] if "phase" in frame else []
    for ax in axes[0]:
        for epoch in starts:  # e.g. where fine-tuning of the backbone began
            ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=0.8)
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
