"""Training-set strategies: balanced subsets, natural-share subsets, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from skinlesion import sampling
from skinlesion.variant import Sampling

Y = np.array([0] * 700 + [1] * 250 + [2] * 50)


def S(strategy="natural", per_class=None, total=None) -> Sampling:
    return Sampling(strategy, per_class, total)


def test_balanced_per_class_counts():
    rows = sampling.balanced_indices(Y, 100, seed=0)
    assert np.bincount(Y[rows]).tolist() == [100, 100, 50]  # a smaller class keeps all it has
    assert np.all(np.diff(rows) > 0)  # sorted, no repeats


def test_balanced_default_is_the_smallest_class():
    rows, weights = sampling.apply(Y, S(strategy="balanced", per_class=None), seed=0)
    assert np.bincount(Y[rows]).tolist() == [50, 50, 50] and weights is None


def test_the_study_5000_per_class_subset():
    y = np.array([0] * 9000 + [1] * 6000)
    rows, _ = sampling.apply(y, S(strategy="balanced", per_class=5000), seed=0)
    assert np.bincount(y[rows]).tolist() == [5000, 5000]


def test_sampling_is_seeded():
    a = sampling.balanced_indices(Y, 60, seed=1)
    assert np.array_equal(a, sampling.balanced_indices(Y, 60, seed=1))
    assert not np.array_equal(a, sampling.balanced_indices(Y, 60, seed=2))


def test_total_keeps_the_natural_shares():
    y = np.array([0] * 15000 + [1] * 5000)
    rows, weights = sampling.apply(y, S(strategy="natural", total=10000), seed=0)
    assert len(rows) == 10000 and np.bincount(y[rows]).tolist() == [7500, 2500] and weights is None
    rows, _ = sampling.apply(Y, S(strategy="natural", total=10), seed=0)
    assert len(rows) == 10 and set(Y[rows]) == {0, 1, 2}  # every class kept at least once
    rows, _ = sampling.apply(Y, S(strategy="natural", total=5000), seed=0)
    assert len(rows) == len(Y)


def test_natural_uses_everything():
    rows, weights = sampling.apply(Y, S(strategy="natural", per_class=None), seed=0)
    assert np.array_equal(rows, np.arange(len(Y))) and weights is None


def test_class_weights_balance_the_classes():
    rows, weights = sampling.apply(Y, S(strategy="class_weight"), seed=0)
    assert len(rows) == len(Y)
    assert weights == pytest.approx({0: 1000 / (3 * 700), 1: 1000 / (3 * 250), 2: 1000 / (3 * 50)})
    # every class carries the same total weight
    totals = [weights[c] * np.sum(Y == c) for c in (0, 1, 2)]
    assert totals == pytest.approx([totals[0]] * 3)


def test_class_weights_only_for_present_classes():
    y = np.array([0, 0, 0, 2])
    assert set(sampling.class_weights(y)) == {0, 2}


def test_unknown_strategy_is_an_error():
    with pytest.raises(ValueError, match="natural, balanced, class_weight"):
        sampling.apply(Y, S(strategy="oversample"), seed=0)
