"""Training-set strategies: the natural distribution, balanced subsets (N per class), class weights."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def balanced_indices(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Up to `per_class` rows of each class (all of the smallest class when None), sorted, seeded."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    n = int(per_class) if per_class else int(counts.min())
    keep = []
    for cls, count in zip(classes, counts):
        rows = np.flatnonzero(labels == cls)
        if count < n:
            log.info("sampling: class %s has %d rows, fewer than %d asked; all are kept", cls, count, n)
        keep.append(rng.choice(rows, size=min(n, count), replace=False))
    return np.sort(np.concatenate(keep))


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (k * count_c) for each class present: the usual 'balanced' weighting."""
    classes, counts = np.unique(labels, return_counts=True)
    return {int(c): float(len(labels) / (len(classes) * n)) for c, n in zip(classes, counts)}


def apply(labels: np.ndarray, sampling: dict, seed: int) -> tuple[np.ndarray, dict[int, float] | None]:
    """(row indices to train on, class weights or None) for a variant's `sampling` settings."""
    strategy = sampling.get("strategy", "natural")
    if strategy == "balanced":
        return balanced_indices(labels, sampling.get("per_class"), seed), None
    rows = np.arange(len(labels))
    if strategy == "class_weight":
        return rows, class_weights(labels)
    return rows, None
