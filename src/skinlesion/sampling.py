"""Training-set strategies: the natural distribution, balanced subsets (N per class), class weights.

A variant's `sampling` settings:
    strategy: natural       every training image (or `total` of them, class shares kept)
    strategy: balanced      `per_class` images of each class (all of the smallest class when null);
                            a class with fewer images than asked keeps all of them (logged, and
                            train.json's train_class_counts says what was used)
    strategy: class_weight  every training image (or `total`), loss weighted n / (k * n_class)
    total: N                optional cap on the training images for natural / class_weight, drawn
                            stratified by class (the study's 10,000-image subsets)

Only the train split is ever sampled; validation and test stay as they are.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)
STRATEGIES = ("natural", "balanced", "class_weight")


def balanced_indices(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Up to `per_class` rows of each class (all of the smallest class when None), sorted, seeded."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    n = int(per_class) if per_class else int(counts.min())
    keep = []
    for cls, count in zip(classes, counts):
        rows = np.flatnonzero(labels == cls)
        if count < n:
            log.warning("sampling: class %s has %d training rows, fewer than the %d asked; all are kept",
                        cls, count, n)
        keep.append(rng.choice(rows, size=min(n, count), replace=False))
    return np.sort(np.concatenate(keep))


def stratified_indices(labels: np.ndarray, total: int | None, seed: int) -> np.ndarray:
    """`total` rows with the classes in their natural shares (largest remainder, every class kept
    at least once), sorted, seeded; all rows when total is None or not smaller than the set."""
    if not total or total >= len(labels):
        if total and total > len(labels):
            log.warning("sampling: %d training rows asked, only %d exist; all are used", total, len(labels))
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts / counts.sum() * total
    take = np.maximum(np.floor(exact).astype(int), 1)
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if take.sum() >= total:
            break
        take[i] += 1
    while take.sum() > total:  # only when the minimum of one per class overshoots
        take[int(np.argmax(take))] -= 1
    keep = [rng.choice(np.flatnonzero(labels == c), size=min(k, n), replace=False)
            for c, k, n in zip(classes, take, counts)]
    return np.sort(np.concatenate(keep))


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (k * count_c) for each class present: the usual 'balanced' weighting."""
    classes, counts = np.unique(labels, return_counts=True)
    return {int(c): float(len(labels) / (len(classes) * n)) for c, n in zip(classes, counts)}


def apply(labels: np.ndarray, sampling, seed: int) -> tuple[np.ndarray, dict[int, float] | None]:
    """(row indices to train on, class weights or None) for a variant's sampling (skinlesion.variant.Sampling)."""
    strategy = sampling.strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"sampling.strategy '{strategy}': allowed {', '.join(STRATEGIES)}")
    if strategy == "balanced":
        return balanced_indices(labels, sampling.per_class, seed), None
    rows = stratified_indices(labels, sampling.total, seed)
    if strategy == "class_weight":
        return rows, class_weights(labels[rows])
    return rows, None
