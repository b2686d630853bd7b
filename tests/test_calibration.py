"""Calibration: reliability bins, ECE, temperature scaling fitted on validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from skinlesion import calibration as C


def _overconfident_binary(n, seed, sharpen=3.0):
    """Labels drawn from true probabilities q; the 'model' reports q with its log-odds tripled."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < q).astype(int)
    z = np.log(q / (1 - q)) * sharpen
    return y, 1 / (1 + np.exp(-z))


def _overconfident_multiclass(n, seed, k=5, sharpen=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.2, size=(n, k))
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in q])
    z = logits * sharpen
    return y, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_ece_is_zero_when_frequencies_match_and_large_when_they_do_not():
    y = np.array([1, 0, 0, 0] * 25)
    assert C.ece(y, np.full(100, 0.25)) == pytest.approx(0.0)
    assert C.ece(y, np.full(100, 0.95)) == pytest.approx(0.70)


def test_reliability_table_bins_every_case_once():
    y, p = _overconfident_binary(1000, 0)
    table = C.reliability(y, p, bins=10)
    assert table["count"].sum() == 1000 and len(table) == 10
    used = table[table["count"] > 0]
    assert ((used["mean_predicted"] >= used["lower"]) & (used["mean_predicted"] <= used["upper"])).all()
    # Over-confident: in the top bin the model says ~0.97 but far fewer are malignant.
    top = table.iloc[-1]
    assert top["mean_predicted"] - top["observed_frequency"] > 0.05


def test_temperature_scaling_lowers_ece_of_overconfident_binary_scores():
    y_val, p_val = _overconfident_binary(3000, 1)
    y_test, p_test = _overconfident_binary(3000, 2)
    calibrate = C.Calibrator.fit("temperature", y_val, p_val)
    assert calibrate.temperature == pytest.approx(3.0, rel=0.2)  # it undoes the sharpening
    before, after = C.ece(y_test, p_test), C.ece(y_test, calibrate(p_test))
    assert before > 0.08 and after < before / 2
    # Monotone: the ranking, hence ROC AUC, is unchanged.
    assert skm.roc_auc_score(y_test, calibrate(p_test)) == pytest.approx(skm.roc_auc_score(y_test, p_test))


def test_temperature_scaling_multiclass_keeps_the_predicted_class():
    y_val, p_val = _overconfident_multiclass(2000, 3)
    y_test, p_test = _overconfident_multiclass(2000, 4)
    calibrate = C.Calibrator.fit("temperature", y_val, p_val)
    assert calibrate.temperature > 2
    q = calibrate(p_test)
    assert np.allclose(q.sum(axis=1), 1.0)
    assert (q.argmax(axis=1) == p_test.argmax(axis=1)).all()
    assert C.ece(y_test, q) < C.ece(y_test, p_test) / 2


def test_underconfident_scores_get_a_temperature_below_one():
    y, p = _overconfident_binary(3000, 5, sharpen=0.4)
    assert C.fit_temperature(y, p) < 1


def test_none_is_the_identity():
    y, p = _overconfident_binary(100, 6)
    calibrate = C.Calibrator.fit("none", y, p)
    assert calibrate.temperature == 1.0 and np.array_equal(calibrate(p), p)
    with pytest.raises(ValueError):
        C.Calibrator.fit("isotonic", y, p)
