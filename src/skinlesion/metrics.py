"""Classification metrics for the evaluate stage; thresholds are chosen on validation, never on test.

Every rank metric (ROC AUC, average precision, partial AUC, sensitivity at fixed specificity ...) is
computed by one vectorised routine over a matrix of case weights: a row of ones gives the point
estimate, rows of bootstrap counts give the replicates. Bootstrap replicates resample *groups*
(patients or lesions: the `group` column), not images, because images of one lesion are not
independent; a group drawn k times counts k times with all its images.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn import metrics as skm

from .errors import PipelineError

PAUC_MIN_TPR = 0.8  # ISIC 2024: area of the ROC above 80% sensitivity, range 0 .. 0.2
FIXED_LEVELS = (0.9, 0.95)  # sensitivity at these specificities, specificity at these sensitivities
CI_LEVEL = 0.95
_MAX_CELLS = 4_000_000  # bootstrap replicates x cases held in memory at once


THRESHOLD_RULES = ("youden", "sensitivity")  # evaluate.threshold (the schema's enum; a test keeps them equal)


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, method: str = "youden", target_sensitivity: float = 0.9,
                     split: str = "validation") -> float:
    """Youden's J (max sensitivity + specificity - 1), or the highest threshold reaching a sensitivity.

    On the full ROC (drop_intermediate=False): the dropped collinear points include thresholds where the
    sensitivity target is first reached, so the reduced curve can give a lower one than the rule asks for.
    A set with one class has no ROC: an error naming `split` and its counts, not a silent 0.5."""
    if method not in THRESHOLD_RULES:
        raise PipelineError(f"unknown threshold rule {method!r}: evaluate.threshold is one of {', '.join(THRESHOLD_RULES)}")
    y_val = np.asarray(y_val)
    if len(np.unique(y_val)) < 2:
        counts = ", ".join(f"{int(c)} of class {v}" for v, c in zip(*np.unique(y_val, return_counts=True)))
        raise PipelineError(f"cannot choose a threshold on the {split} set: it has a single class ({counts or 'no rows'}); "
                            "give it cases of both classes (more data, or other split fractions).")
    fpr, tpr, thresholds = skm.roc_curve(y_val, p_val, drop_intermediate=False)
    # Point 0 is roc_curve's "flag nothing" (threshold inf): not a score, and clipping it to 1.0 would flag
    # the cases scored 1.0. The lowest score (flag all) has J = 0 too, so no rule needs point 0.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if method == "sensitivity":
        ok = np.flatnonzero(tpr >= target_sensitivity)
        return float(thresholds[ok[0]])
    return float(thresholds[np.argmax(tpr - fpr)])


def _r(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


# ----------------------------------------------------------------------------------------------
# Weighted ROC statistics, vectorised over rows of weights (B, n)


class Ranked:
    """One scored set sorted once; `curves(w)` gives the ROC points of any weightings of it."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        p = np.asarray(p, dtype=np.float64)
        self.order = np.argsort(-p, kind="mergesort")
        self.y = np.asarray(y)[self.order].astype(np.float64)
        sorted_p = p[self.order]
        self.ends = np.r_[np.flatnonzero(np.diff(sorted_p) != 0), len(p) - 1]  # last row of each tie block

    def curves(self, w: np.ndarray) -> "Curves":
        w = np.atleast_2d(w)[:, self.order]
        tp = np.cumsum(w * self.y, axis=1)[:, self.ends]
        fp = np.cumsum(w * (1 - self.y), axis=1)[:, self.ends]
        return Curves(tp, fp)


class Curves:
    """ROC points of B weightings of one scored set, at every distinct score (descending), from (0, 0)."""

    def __init__(self, tp: np.ndarray, fp: np.ndarray):
        zero = np.zeros((len(tp), 1))
        self.tp = np.hstack([zero, tp])
        self.fp = np.hstack([zero, fp])
        with np.errstate(invalid="ignore", divide="ignore"):
            self.tpr = self.tp / self.tp[:, -1:]
            self.fpr = self.fp / self.fp[:, -1:]
        # A weighting without both classes has no ROC: NaN, left out of the interval.
        self.valid = (self.tp[:, -1] > 0) & (self.fp[:, -1] > 0)

    def _mask(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.valid, values, np.nan)

    def auc(self) -> np.ndarray:
        dx = np.diff(self.fpr, axis=1)
        return self._mask(np.sum(dx * (self.tpr[:, 1:] + self.tpr[:, :-1]) / 2, axis=1))

    def average_precision(self) -> np.ndarray:
        """sum over thresholds of (recall step) x precision: scikit-learn's definition, no interpolation."""
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = self.tp[:, 1:] / (self.tp[:, 1:] + self.fp[:, 1:])
        steps = np.diff(self.tpr, axis=1)
        return self._mask(np.nansum(steps * precision, axis=1))

    def partial_auc(self, min_tpr: float = PAUC_MIN_TPR) -> np.ndarray:
        """Area under the ROC and above TPR = min_tpr: integral of max(tpr(fpr) - min_tpr, 0) d fpr.

        Equal to the ISIC 2024 challenge metric (0.2 for a perfect ranking, 0.02 for a random one).
        """
        x0, x1 = self.fpr[:, :-1], self.fpr[:, 1:]
        y0, y1 = self.tpr[:, :-1] - min_tpr, self.tpr[:, 1:] - min_tpr
        dx = x1 - x0
        area = np.where((y0 >= 0) & (y1 >= 0), dx * (y0 + y1) / 2, 0.0)
        # A segment crossing the level (the curve rises: y0 < 0 < y1): only the triangle above it counts.
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where((y0 < 0) & (y1 > 0), dx * y1 / (y1 - y0) * y1 / 2, 0.0)
        return self._mask(np.sum(area + np.nan_to_num(part), axis=1))

    def sensitivity_at_specificity(self, specificity: float) -> np.ndarray:
        """The highest sensitivity among operating points with at least this specificity."""
        ok = self.fpr <= 1 - specificity + 1e-12
        return self._mask(np.max(np.where(ok, self.tpr, 0.0), axis=1))

    def specificity_at_sensitivity(self, sensitivity: float) -> np.ndarray:
        """The highest specificity among operating points with at least this sensitivity."""
        ok = self.tpr >= sensitivity - 1e-12
        return self._mask(np.max(np.where(ok, 1 - self.fpr, 0.0), axis=1))


def _pct(level: float) -> str:
    return f"{round(level * 100):d}"


RANK_METRICS = ["roc_auc", "average_precision", "pauc_above_80_tpr"] + [
    name for level in FIXED_LEVELS
    for name in (f"sensitivity_at_{_pct(level)}_specificity", f"specificity_at_{_pct(level)}_sensitivity")
]

Stat = Callable[[np.ndarray], dict[str, np.ndarray]]  # (B, n) weights -> name -> B values


def rank_stats(y: np.ndarray, p: np.ndarray, prefix: str = "") -> Stat:
    """The binary rank metrics (RANK_METRICS) of one scored set under any weightings."""
    ranked = Ranked(y, p)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        c = ranked.curves(w)
        out = {"roc_auc": c.auc(), "average_precision": c.average_precision(), "pauc_above_80_tpr": c.partial_auc()}
        for level in FIXED_LEVELS:
            out[f"sensitivity_at_{_pct(level)}_specificity"] = c.sensitivity_at_specificity(level)
            out[f"specificity_at_{_pct(level)}_sensitivity"] = c.specificity_at_sensitivity(level)
        return {prefix + k: v for k, v in out.items()}

    return stat


def recall_stat(y: np.ndarray, correct: np.ndarray, cls: int) -> Callable[[np.ndarray], np.ndarray]:
    """Weighted recall of one class (share of its rows predicted correctly); NaN without such rows."""
    rows = y == cls

    def stat(w: np.ndarray) -> np.ndarray:
        total = w[:, rows].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (w[:, rows] * correct[rows]).sum(axis=1) / total, np.nan)

    return stat


def nanmean_rows(values: list[np.ndarray]) -> np.ndarray:
    """Mean over the finite entries of each column of the stacked arrays (NaN where none is finite)."""
    stacked = np.vstack(values)
    out = np.full(stacked.shape[1], np.nan)
    some = np.isfinite(stacked).any(axis=0)
    out[some] = np.nanmean(stacked[:, some], axis=0)
    return out


# ----------------------------------------------------------------------------------------------
# Group bootstrap


def group_codes(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Integer group per row; without groups every row is its own group."""
    if groups is None:
        return np.arange(n)
    return np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]


def bootstrap(stat: Stat, groups: np.ndarray, n_boot: int, seed: int,
              level: float = CI_LEVEL) -> tuple[dict[str, tuple[float, float] | None], int]:
    """Percentile intervals of every statistic `stat` returns, over `n_boot` resamples of whole groups.

    `groups` are integer codes (group_codes). All statistics see the same resamples. Returns
    ({name: (low, high) or None}, number of replicates). Replicates where a statistic is undefined
    (e.g. no malignant case drawn) are left out of that statistic's interval; with fewer than 10 usable
    replicates the interval is None.
    """
    codes = np.asarray(groups)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_boot <= 0 or n_groups < 2:
        return {}, 0
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // max(len(codes), 1))
    values: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        # Each replicate draws n_groups groups with replacement: multinomial counts per group,
        # and every image weighs as often as its group was drawn.
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=b)
        w = counts[:, codes].astype(np.float64)
        for name, v in stat(w).items():
            values.setdefault(name, []).append(v)
        done += b
    alpha = (1 - level) / 2
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts)
        v = v[np.isfinite(v)]
        out[name] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if len(v) >= 10 else None
    return out, n_boot


def _with_intervals(result: dict, stat: Stat, names: list[str], groups, n_boot: int, seed: int) -> dict:
    codes = group_codes(groups, result["n"])
    intervals, replicates = bootstrap(stat, codes, n_boot, seed)
    for name in names:
        ci = intervals.get(name)
        result[f"{name}_ci95"] = None if ci is None else {"low": _r(ci[0]), "high": _r(ci[1])}
    result["n_groups"] = int(codes.max()) + 1 if len(codes) else 0
    result["bootstrap_replicates"] = replicates
    return result


# ----------------------------------------------------------------------------------------------
# The metric blocks of evaluation.json


def predictive_values(sensitivity, specificity, prevalence: float):
    """PPV and NPV that a test of this sensitivity and specificity has where malignancy has `prevalence`
    (Bayes' rule): what the thresholded model means to a reader, at a stated prevalence rather than the
    test set's. Works on arrays (bootstrap replicates); NaN where undefined."""
    s, t, q = np.asarray(sensitivity, dtype=np.float64), np.asarray(specificity, dtype=np.float64), prevalence
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = s * q / (s * q + (1 - t) * (1 - q))
        npv = t * (1 - q) / (t * (1 - q) + (1 - s) * q)
    return ppv, npv


def prevalence_names(prevalences: dict[str, float]) -> list[str]:
    return [f"{kind}_at_{name}_prevalence" for name in prevalences for kind in ("ppv", "npv")]


def binary(y: np.ndarray, p: np.ndarray, threshold: float, groups: np.ndarray | None = None,
           n_boot: int = 0, seed: int = 0, prevalences: dict[str, float] | None = None) -> dict:
    """Thresholded metrics at `threshold`, rank metrics, and group-bootstrap 95% intervals of both.

    `prevalences` ({name: prevalence}) adds ppv_at_<name>_prevalence and npv_at_<name>_prevalence: the
    predictive values at a stated prevalence from this set's sensitivity and specificity (Bayes), with
    intervals from the same bootstrap replicates; the stated values are recorded under `prevalences`."""
    prevalences = dict(prevalences or {})
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    result = {
        "n": int(len(y)),
        "n_malignant": int(y.sum()),
        "accuracy": _r((tp + tn) / len(y)),
        "sensitivity": _r(tp / (tp + fn)) if tp + fn else None,
        "specificity": _r(tn / (tn + fp)) if tn + fp else None,
        "balanced_accuracy": _r(skm.balanced_accuracy_score(y, pred)) if both else None,
        "ppv": _r(tp / (tp + fp)) if tp + fp else None,
        "npv": _r(tn / (tn + fn)) if tn + fn else None,
        "threshold": _r(threshold),
        **{name: None for name in RANK_METRICS},
    }
    if prevalences:
        result["prevalences"] = {name: _r(q) for name, q in prevalences.items()}
        for name, q in prevalences.items():
            ppv, npv = predictive_values(result["sensitivity"] if result["sensitivity"] is not None else np.nan,
                                         result["specificity"] if result["specificity"] is not None else np.nan, q)
            result[f"ppv_at_{name}_prevalence"], result[f"npv_at_{name}_prevalence"] = _r(ppv), _r(npv)
    if not both:
        return _with_intervals(result, lambda w: {}, RANK_METRICS + prevalence_names(prevalences), groups, 0, seed)
    ranks = rank_stats(y, p)
    result.update({k: _r(v[0]) for k, v in ranks(np.ones((1, len(y)))).items()})
    correct = (pred == y).astype(np.float64)
    sens, spec = recall_stat(y, correct, 1), recall_stat(y, correct, 0)

    def stat(w):
        s, t = sens(w), spec(w)
        out = {**ranks(w), "sensitivity": s, "specificity": t, "balanced_accuracy": (s + t) / 2}
        for name, q in prevalences.items():
            out[f"ppv_at_{name}_prevalence"], out[f"npv_at_{name}_prevalence"] = predictive_values(s, t, q)
        return out

    names = RANK_METRICS + ["sensitivity", "specificity", "balanced_accuracy"] + prevalence_names(prevalences)
    return _with_intervals(result, stat, names, groups, n_boot, seed)


def multiclass(y: np.ndarray, p: np.ndarray, classes: list[str], groups: np.ndarray | None = None,
               n_boot: int = 0, seed: int = 0) -> dict:
    """Metrics over the classes present in y; absent classes are named as absent, not scored."""
    y = np.asarray(y).astype(int)
    pred = p.argmax(axis=1)
    present = sorted(set(y.tolist()))
    recall = {}
    for i, name in enumerate(classes):
        rows = y == i
        recall[name] = _r((pred[rows] == i).mean()) if rows.any() else "absent"
    ones = np.ones((1, len(y)))
    ovr = {}
    for i in present:
        onehot = (y == i).astype(int)
        if 0 < onehot.sum() < len(y):
            ovr[classes[i]] = Ranked(onehot, p[:, i])
    aucs, aps = {}, {}
    for name, ranked in ovr.items():
        c = ranked.curves(ones)
        aucs[name], aps[name] = _r(c.auc()[0]), _r(c.average_precision()[0])
    correct = (pred == y).astype(np.float64)
    recalls = [recall_stat(y, correct, i) for i in present]
    result = {
        "n": int(len(y)),
        "accuracy": _r((pred == y).mean()),
        "balanced_accuracy": _r(np.mean([(pred[y == i] == i).mean() for i in present])),
        "macro_roc_auc_ovr": _r(np.mean(list(aucs.values()))) if aucs else None,
        "macro_average_precision_ovr": _r(np.mean(list(aps.values()))) if aps else None,
        "roc_auc_ovr": aucs,
        "average_precision_ovr": aps,
        "recall": recall,
        "absent_classes": [classes[i] for i in range(len(classes)) if i not in present],
    }

    def stat(w):
        out = {"balanced_accuracy": nanmean_rows([r(w) for r in recalls])}
        if ovr:
            curves = [r.curves(w) for r in ovr.values()]
            out["macro_roc_auc_ovr"] = nanmean_rows([c.auc() for c in curves])
            out["macro_average_precision_ovr"] = nanmean_rows([c.average_precision() for c in curves])
        return out

    names = ["balanced_accuracy", "macro_roc_auc_ovr", "macro_average_precision_ovr"]
    return _with_intervals(result, stat, names, groups, n_boot, seed)
