"""Our metrics against the ISIC challenges' own scorer, isic-challenge-scoring (ImageMarkup, Apache-2.0;
pinned in the test extra): on the same predictions, every metric both compute agrees to 1e-6 (our
reported values are rounded to 6 decimals). Where the definitions differ, docs/evaluation.md ("The ISIC
challenge scorer") says how, and the test checks the stated relation instead of an equality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from isic_challenge_scoring import metrics as official
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

from skinlesion import metrics as M

# the scorer's own deprecation noise (pandas inplace, rdp's 2-D cross products), not ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:The inplace keyword")
CLASSES = ["benign", "bcc", "melanoma", "metastasis", "scc"]


def _binary_set(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y)))
    p = np.round(p, 2)  # ties, as real scores have
    p[p == 0.5] = 0.51  # the scorer flags > 0.5, we flag >= the threshold: no score exactly on it
    return y, p


def _scorer(y_onehot: np.ndarray, p: np.ndarray, classes: list[str]) -> ClassificationScore:
    truth = pd.DataFrame(y_onehot.astype(float), columns=classes)
    pred = pd.DataFrame(p, columns=classes)
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=truth.index)
    return ClassificationScore(truth, pred, weights, ClassificationMetric.BALANCED_ACCURACY)


def _fpr_at(y, p, tpr_level: float) -> float:
    """Where the full ROC reaches `tpr_level`, interpolated as the scorer's auc_above_sensitivity does."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    i = tpr.searchsorted(tpr_level, side="left")
    return float(np.interp(tpr_level, tpr[i - 1:i + 1], fpr[i - 1:i + 1]))


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_agree_with_the_isic_scorer(seed):
    y, p = _binary_set(seed)
    ours = M.binary(y, p, 0.5)
    score = _scorer(np.c_[1 - y, y], np.c_[1 - p, p], ["benign", "malignant"])
    theirs = score.per_category.loc["malignant"]
    assert ours["roc_auc"] == pytest.approx(theirs["auc"], abs=1e-6)
    assert ours["average_precision"] == pytest.approx(theirs["ap"], abs=1e-6)
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert ours["balanced_accuracy"] == pytest.approx(score.aggregate["balanced_accuracy"], abs=1e-6)
    # pAUC: the scorer's auc_sens_80 is the area under the curve right of where it reaches
    # 80% sensitivity; ours (ISIC 2024) only the part above the 0.8 line: the same curve, less a rectangle.
    rectangle = 0.8 * (1 - _fpr_at(y, p, 0.8))
    assert ours["pauc_above_80_tpr"] == pytest.approx(theirs["auc_sens_80"] - rectangle, abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_metrics_agree_with_the_isic_scorer(seed):
    rng = np.random.default_rng(100 + seed)
    n = 500
    y = rng.choice(5, size=n, p=[0.5, 0.15, 0.2, 0.05, 0.1])
    logits = rng.normal(size=(n, 5))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # continuous: no argmax ties
    ours = M.multiclass(y, p, CLASSES)
    score = _scorer(np.eye(5)[y], p, CLASSES)
    assert ours["balanced_accuracy"] == pytest.approx(score.aggregate["balanced_accuracy"], abs=1e-6)
    for c in CLASSES:
        assert ours["roc_auc_ovr"][c] == pytest.approx(score.per_category.loc[c, "auc"], abs=1e-6), c
    assert ours["macro_roc_auc_ovr"] == pytest.approx(score.macro_average["auc"], abs=1e-6)
    assert ours["macro_average_precision_ovr"] == pytest.approx(score.macro_average["ap"], abs=1e-6)


def test_undefined_rates_differ_by_definition():
    """No malignant case: the scorer gives sensitivity 1.0 (its "freebie"), we give none (null in JSON)."""
    y = np.zeros(10, int)
    p = np.linspace(0.1, 0.9, 10)
    assert M.binary(y, p, 0.5)["sensitivity"] is None
    from isic_challenge_scoring.confusion import create_binary_confusion_matrix

    cm = create_binary_confusion_matrix(truth_binary_values=y.astype(bool), prediction_binary_values=p > 0.5,
                                        weights=np.ones(10), name="x")
    assert official.binary_sensitivity(cm) == 1.0
