"""Calibration: does a predicted 30% mean malignant 3 times in 10? Reliability, ECE, temperature scaling.

Binary models are judged on P(malignant) itself: cases are binned by predicted probability and each
bin's mean prediction is set against the observed share of malignant cases. Multiclass models are judged
on their top-label confidence (the highest class probability) against the share predicted correctly.
The expected calibration error (ECE) is the case-weighted mean gap over equal-width bins.

Temperature scaling (Guo et al. 2017) divides the model's logits by one number T fitted on the
validation split (maximum likelihood). T > 1 softens over-confident scores, T < 1 sharpens timid ones.
It is monotone: rankings, hence ROC AUC, AP and the ROC curve, do not change; thresholded metrics do,
which is why evaluate chooses the threshold on calibrated validation scores when calibration is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPS = 1e-7
METHODS = ("none", "temperature")


def _binary(p: np.ndarray) -> bool:
    return np.ndim(p) == 1


def confidence_and_hit(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted probability, outcome 0/1) pairs that calibration compares."""
    y = np.asarray(y).astype(int)
    if _binary(p):
        return np.asarray(p, dtype=np.float64), y.astype(np.float64)
    return p.max(axis=1).astype(np.float64), (p.argmax(axis=1) == y).astype(np.float64)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """One row per equal-width bin: bounds, cases, mean predicted probability, observed frequency."""
    conf, hit = confidence_and_hit(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, conf, minlength=bins) / count
        observed = np.bincount(idx, hit, minlength=bins) / count
    return pd.DataFrame({
        "bin": np.arange(bins), "lower": edges[:-1], "upper": edges[1:], "count": count,
        "mean_predicted": mean_p, "observed_frequency": observed,
    })


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (share of cases) x |mean predicted - observed|."""
    table = reliability(y, p, bins)
    used = table["count"] > 0
    gaps = (table["mean_predicted"] - table["observed_frequency"]).abs()[used]
    return float((table["count"][used] * gaps).sum() / max(int(table["count"].sum()), 1))


def logits(p: np.ndarray) -> np.ndarray:
    """Binary: log-odds of P(malignant); multiclass: log-probabilities (softmax-invariant logits)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p)) if _binary(p) else np.log(p)


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by `temperature` (1.0 returns them unchanged)."""
    p = np.asarray(p, dtype=np.float64)
    if temperature == 1.0:
        return p
    z = logits(p) / temperature
    if _binary(p):
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    if _binary(p):
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The T > 0 minimising the negative log-likelihood of y under apply_temperature(p, T)."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda log_t: nll(y, apply_temperature(p, float(np.exp(log_t)))),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return round(float(np.exp(res.x)), 6)


@dataclass(frozen=True)
class Calibrator:
    """What evaluate fitted on validation; predict applies the same to new scores."""

    method: str = "none"
    temperature: float = 1.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return apply_temperature(p, self.temperature) if self.method == "temperature" else np.asarray(p, np.float64)

    @classmethod
    def fit(cls, method: str, y_val: np.ndarray, p_val: np.ndarray) -> "Calibrator":
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(METHODS)}")
        if method == "none":
            return cls()
        return cls("temperature", fit_temperature(y_val, p_val))
