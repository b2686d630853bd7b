"""Metrics of the evaluate stage: rank metrics, partial AUC, fixed-operating-point readouts, group bootstrap."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from skinlesion import metrics as M
from skinlesion.errors import PipelineError


def isic2024_pauc(y, p, min_tpr=0.8):
    """The ISIC 2024 challenge's reference scoring code (flip labels and scores, partial area to max_fpr)."""
    v_gt = np.abs(np.asarray(y) - 1)
    v_pred = -1.0 * np.asarray(p)
    max_fpr = abs(1 - min_tpr)
    fpr, tpr, _ = skm.roc_curve(v_gt, v_pred)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp = [fpr[stop - 1], fpr[stop]]
    y_interp = [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    return skm.auc(fpr, tpr)


def point(y, p):
    return M.rank_stats(y, p)(np.ones((1, len(y))))


@pytest.mark.parametrize("seed", range(4))
def test_rank_metrics_match_sklearn_and_isic_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) + 0.6 * y, 1)  # rounded: many tied scores
    stats = point(y, p)
    assert stats["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert stats["average_precision"][0] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert stats["pauc_above_80_tpr"][0] == pytest.approx(isic2024_pauc(y, p), abs=1e-12)


def test_pauc_is_02_for_perfect_0_for_reversed_and_002_for_random():
    y = np.r_[np.zeros(500), np.ones(500)].astype(int)
    perfect = np.r_[np.linspace(0, 0.4, 500), np.linspace(0.6, 1, 500)]
    assert point(y, perfect)["pauc_above_80_tpr"][0] == pytest.approx(0.2)
    assert point(y, 1 - perfect)["pauc_above_80_tpr"][0] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40000)
    random_scores = rng.random(40000)
    assert point(y, random_scores)["pauc_above_80_tpr"][0] == pytest.approx(0.02, abs=0.003)


def test_sensitivity_at_specificity_and_back_read_off_the_roc_curve():
    # 10 benign scored 0..9, 10 malignant scored 5..14: a hand-checkable curve.
    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    p = np.r_[np.arange(10), np.arange(5, 15)].astype(float)
    s = point(y, p)
    # Threshold 9 flags benign 9 and malignant 9..14 -> spec 0.9, sens 0.6; threshold 10 -> spec 1.0, sens 0.5.
    assert s["sensitivity_at_90_specificity"][0] == pytest.approx(0.6)
    assert s["sensitivity_at_95_specificity"][0] == pytest.approx(0.5)
    # Sensitivity 100% needs threshold 5: benign 5..9 flagged -> spec 0.5; 90% (threshold 6) -> spec 0.6.
    assert s["specificity_at_95_sensitivity"][0] == pytest.approx(0.5)
    assert s["specificity_at_90_sensitivity"][0] == pytest.approx(0.6)


def test_binary_thresholded_metrics_and_keys():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.3, 0.4, 0.7, 0.8, 0.9])
    m = M.binary(y, p, 0.5)
    assert (m["sensitivity"], m["specificity"], m["balanced_accuracy"]) == (0.75, 0.75, 0.75)
    assert m["ppv"] == 0.75 and m["npv"] == 0.75 and m["threshold"] == 0.5 and m["n"] == 8
    for key in ("roc_auc", "average_precision", "accuracy", "n_malignant", *M.RANK_METRICS):
        assert key in m
    assert m["roc_auc_ci95"] is None  # no bootstrap asked for


def test_single_class_set_has_no_rank_metrics_but_does_not_fail():
    m = M.binary(np.zeros(5, int), np.linspace(0, 1, 5), 0.5, np.arange(5), 100, 0)
    assert m["roc_auc"] is None and m["pauc_above_80_tpr"] is None and m["specificity"] == 0.4


def _grouped(n_groups, per_group, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    y_g = rng.integers(0, 2, n_groups)
    y = np.repeat(y_g, per_group)
    p = rng.normal(size=n_groups * per_group) + signal * y
    return y, p, np.repeat(np.arange(n_groups), per_group)


def _width(m, key="roc_auc"):
    return m[f"{key}_ci95"]["high"] - m[f"{key}_ci95"]["low"]


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_groups():
    small = M.binary(*_grouped(40, 3)[:2], 0.5, _grouped(40, 3)[2], 500, seed=1)
    y, p, g = _grouped(1000, 3)
    large = M.binary(y, p, 0.5, g, 500, seed=1)
    for m in (small, large):
        for key in ("roc_auc", "average_precision", "pauc_above_80_tpr", "sensitivity", "specificity",
                    "balanced_accuracy", "sensitivity_at_90_specificity", "specificity_at_90_sensitivity"):
            ci = m[f"{key}_ci95"]
            assert ci["low"] <= m[key] <= ci["high"], key
    assert _width(large) < _width(small) / 2
    assert large["n_groups"] == 1000 and large["bootstrap_replicates"] == 500


def test_bootstrap_resamples_groups_not_images():
    # Every lesion photographed 10 times with the same score: 10x the images, no extra information.
    rng = np.random.default_rng(3)
    y1 = rng.integers(0, 2, 150)
    p1 = rng.normal(size=150) + y1
    y10, p10, g10 = np.repeat(y1, 10), np.repeat(p1, 10), np.repeat(np.arange(150), 10)
    once = M.binary(y1, p1, 0.5, np.arange(150), 800, seed=0)
    by_group = M.binary(y10, p10, 0.5, g10, 800, seed=0)
    by_image = M.binary(y10, p10, 0.5, None, 800, seed=0)  # what a naive bootstrap would report
    assert by_group["roc_auc"] == pytest.approx(once["roc_auc"])
    assert _width(by_group) == pytest.approx(_width(once), rel=0.25)
    assert _width(by_image) < _width(by_group) / 2


def test_bootstrap_is_seeded():
    y, p, g = _grouped(60, 2)
    a, b = M.binary(y, p, 0.5, g, 200, seed=7), M.binary(y, p, 0.5, g, 200, seed=7)
    c = M.binary(y, p, 0.5, g, 200, seed=8)
    assert a == b
    assert a["roc_auc_ci95"] != c["roc_auc_ci95"]


def test_bootstrap_is_vectorised_fast_enough():
    y, p, g = _grouped(2000, 2, seed=5)
    started = time.perf_counter()
    M.binary(y, p, 0.5, g, 1000, seed=0)
    assert time.perf_counter() - started < 20  # ~1-2 s on a laptop core; generous for shared CI machines


def test_choose_threshold_on_validation():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    t = M.choose_threshold(y, p, "youden")
    assert t == pytest.approx(0.7)  # sens 0.75, spec 1.0: J = 0.75 is the best
    t90 = M.choose_threshold(y, p, "sensitivity", 0.9)
    assert t90 == pytest.approx(0.4)  # the highest threshold still flagging every malignant case
    with pytest.raises(PipelineError, match=r"validation set: it has a single class \(4 of class 0\)"):
        M.choose_threshold(np.zeros(4, int), p[:4])


def _highest_reaching(y, p, target):
    """The rule by brute force: of every distinct score as a threshold (score >= t flags), the highest
    whose sensitivity reaches the target."""
    ok = [t for t in np.unique(p) if (p[y == 1] >= t).mean() >= target]
    return max(ok)


def _best_youden(y, p):
    return max(((p[y == 1] >= t).mean() - (p[y == 0] >= t).mean()) for t in np.unique(p))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(4, 60), st.sampled_from([0.5, 0.8, 0.9, 0.95, 1.0]),
       st.integers(2, 12))
def test_threshold_rules_on_the_full_roc(seed, n, target, levels):
    # Few distinct score levels make ties and collinear ROC points: where drop_intermediate=True chose wrong.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    p = rng.integers(0, levels, n) / (levels - 1)
    assert M.choose_threshold(y, p, "sensitivity", target) == pytest.approx(_highest_reaching(y, p, target))
    t = M.choose_threshold(y, p, "youden")
    j = (p[y == 1] >= t).mean() - (p[y == 0] >= t).mean()
    assert j == pytest.approx(_best_youden(y, p))


def test_multiclass_balanced_accuracy_recall_and_intervals():
    classes = ["benign", "bcc", "melanoma", "metastasis", "scc"]
    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 2], size=300, p=[0.6, 0.2, 0.2])
    logits = rng.normal(size=(300, 5))
    logits[np.arange(300), y] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = M.multiclass(y, p, classes, np.arange(300) // 2, 300, seed=0)
    pred = p.argmax(axis=1)
    recalls = [(pred[y == c] == c).mean() for c in (0, 1, 2)]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=1e-6)
    assert m["recall"]["metastasis"] == "absent" and m["absent_classes"] == ["metastasis", "scc"]
    assert m["recall"]["bcc"] == pytest.approx(recalls[1], abs=1e-6)
    for key in ("balanced_accuracy", "macro_roc_auc_ovr", "macro_average_precision_ovr"):
        ci = m[f"{key}_ci95"]
        assert ci["low"] <= m[key] <= ci["high"]
    assert m["roc_auc_ovr"]["melanoma"] == pytest.approx(skm.roc_auc_score(y == 2, p[:, 2]), abs=1e-6)


