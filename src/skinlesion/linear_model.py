"""The logistic-regression model file, model.npz: the fitted arrays themselves, never a pickle.

A bundle is handed from person to person, and a pickle (joblib) runs whatever code it holds when loaded, so
the metadata logistic regression is stored as the numbers that define it and rebuilt from them:

    format                      1
    features                    the metadata features, in bundle.json's order (checked against it)
    n_classes                   the task's class count (columns of predict_proba)
    classes                     the classes the fit saw (a subset of 0..n_classes-1, sorted)
    scaler_mean, scaler_scale   StandardScaler's mean_ and scale_ (one per metadata column); these and the
                                others in the dtype the fit left them (float32 or float64)
    scaler_var                  its var_
    scaler_n_samples_seen       its n_samples_seen_
    coef, intercept             LogisticRegression's coef_ and intercept_

np.load reads it with allow_pickle=False (an object array is refused, not unpickled), after the zip's
members are checked by name and uncompressed size; every array is checked for dtype, shape and finiteness
before the scikit-learn estimators are rebuilt. The rebuilt pipeline computes exactly what the fitted one
did: the same arrays through the same scikit-learn code.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .io import atomic_path

FORMAT = 1
MAX_MEMBER = 16 << 20  # uncompressed bytes of one array: a metadata model has tens of columns, not millions
FLOATS = ("scaler_mean", "scaler_scale", "scaler_var", "coef", "intercept")
INTS = ("format", "n_classes", "classes")
KEYS = frozenset(FLOATS + INTS + ("features", "scaler_n_samples_seen"))


class AllClasses:
    """A fitted classifier whose predict_proba has one column per class of the task, in order,
    also for classes absent from its training data (their probability is 0)."""

    def __init__(self, model, n_classes: int):
        self.model = model
        self.n_classes = n_classes

    @property
    def classes_(self) -> np.ndarray:
        return np.arange(self.n_classes)

    def predict_proba(self, x) -> np.ndarray:
        probs = self.model.predict_proba(x)
        out = np.zeros((len(probs), self.n_classes), dtype=probs.dtype)
        out[:, self.model.classes_.astype(int)] = probs
        return out

    def predict(self, x) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)


def _steps(model):
    """(StandardScaler, LogisticRegression) of a fitted pipeline, through AllClasses."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = model.model if isinstance(model, AllClasses) else model
    if not (isinstance(pipeline, Pipeline) and len(pipeline) == 2 and isinstance(pipeline[0], StandardScaler)
            and isinstance(pipeline[-1], LogisticRegression)):
        raise PipelineError(f"a {type(pipeline).__name__} is not the StandardScaler + LogisticRegression pipeline "
                            "the logreg kind saves")
    return pipeline[0], pipeline[-1]


def arrays(model, features: list[str], n_classes: int) -> dict[str, np.ndarray]:
    """The arrays that define a fitted StandardScaler + LogisticRegression pipeline (optionally in AllClasses)."""
    scaler, logreg = _steps(model)
    return {
        "format": np.array(FORMAT, dtype=np.int64),
        "features": np.array(list(features), dtype=np.str_),
        "n_classes": np.array(n_classes, dtype=np.int64),
        "classes": np.asarray(logreg.classes_, dtype=np.int64),
        # each in the dtype the fit left it (float32 coefficients from float32 features): the same arithmetic
        "scaler_mean": np.asarray(scaler.mean_),
        "scaler_scale": np.asarray(scaler.scale_),
        "scaler_var": np.asarray(scaler.var_),
        "scaler_n_samples_seen": np.asarray(scaler.n_samples_seen_),
        "coef": np.asarray(logreg.coef_),
        "intercept": np.asarray(logreg.intercept_),
    }


def save(path: str | os.PathLike, model, features: list[str], n_classes: int) -> None:
    """Write model.npz (uncompressed, no pickle), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays(model, features, n_classes))


def _read(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PipelineError(f"{what}: not a model.npz archive ({type(exc).__name__}: {exc})") from None
    names = {m.filename for m in members}
    expected = {f"{k}.npy" for k in KEYS}
    if names != expected or len(members) != len(expected):
        odd = sorted((names ^ expected))[:3]
        raise PipelineError(f"{what}: holds arrays {sorted(names)[:12]}, expected exactly "
                            f"{sorted(expected)} (unexpected or missing: {odd})")
    big = [m.filename for m in members if m.file_size > MAX_MEMBER]
    if big:
        raise PipelineError(f"{what}: array {big[0]} is over {MAX_MEMBER} bytes: not a metadata model")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in KEYS}
    except ValueError as exc:  # "Object arrays cannot be loaded when allow_pickle=False", a bad header, ...
        raise PipelineError(f"{what}: an array cannot be read without unpickling or is damaged ({exc}); "
                            "model.npz holds plain numbers only") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"{what}: damaged ({type(exc).__name__}: {exc})") from None


def _check(a: dict[str, np.ndarray], what: str, features: list[str], n_classes: int) -> None:
    def bad(field: str, expected: str):
        got = a[field]
        raise PipelineError(f"{what}: array '{field}' (dtype {got.dtype}, shape {got.shape}) is not {expected}")

    for k in INTS:
        if a[k].dtype.kind not in "iu":
            bad(k, "integer")
    for k in FLOATS:
        if a[k].dtype not in (np.float32, np.float64) or not np.all(np.isfinite(a[k])):
            bad(k, "finite float32 or float64")
    if a["features"].dtype.kind != "U" or a["features"].ndim != 1:
        bad("features", "a list of feature names")
    if a["format"].shape != () or int(a["format"]) != FORMAT:
        bad("format", f"{FORMAT}")
    if list(a["features"]) != list(features):
        raise PipelineError(f"{what}: was fitted on features {list(a['features'])[:20]}, but bundle.json's field "
                            f"'metadata.features' is {list(features)}")
    if a["n_classes"].shape != () or int(a["n_classes"]) != n_classes:
        bad("n_classes", f"the task's {n_classes} classes")
    classes = a["classes"]
    if (classes.ndim != 1 or len(classes) < 2 or np.any(np.diff(classes) <= 0) or classes[0] < 0
            or classes[-1] >= n_classes):
        bad("classes", f"2..{n_classes} sorted distinct classes in 0..{n_classes - 1}")
    width = a["scaler_mean"].shape
    if len(width) != 1 or width[0] < 1:
        bad("scaler_mean", "one value per metadata column")
    for k in ("scaler_scale", "scaler_var"):
        if a[k].shape != width:
            bad(k, f"shape {width} (as scaler_mean)")
    if np.any(a["scaler_scale"] <= 0):
        bad("scaler_scale", "positive")
    seen = a["scaler_n_samples_seen"]
    if seen.shape != () or seen.dtype.kind not in "iuf" or not np.isfinite(seen) or seen < 2:
        bad("scaler_n_samples_seen", "a count of at least 2")
    rows = 1 if len(classes) == 2 else len(classes)
    if a["coef"].shape != (rows, width[0]):
        bad("coef", f"shape {(rows, width[0])} ({len(classes)} classes x {width[0]} columns)")
    if a["intercept"].shape != (rows,):
        bad("intercept", f"shape {(rows,)}")


def load(path: str | os.PathLike, what: str, features: list[str], n_classes: int, n_columns: int):
    """The scikit-learn pipeline of model.npz at `path`, rebuilt from its arrays and checked against the
    bundle (its features, the task's class count, the metadata column count); PipelineError naming `what`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a = _read(Path(path), what)
    _check(a, what, features, n_classes)
    if a["scaler_mean"].shape != (n_columns,):
        raise PipelineError(f"{what}: takes {a['scaler_mean'].shape[0]} metadata column(s), but bundle.json's "
                            f"field 'metadata.features' makes {n_columns}")
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_ = a["scaler_mean"], a["scaler_scale"], a["scaler_var"]
    scaler.n_samples_seen_ = a["scaler_n_samples_seen"][()]
    scaler.n_features_in_ = n_columns
    logreg = LogisticRegression()
    logreg.coef_, logreg.intercept_, logreg.classes_ = a["coef"], a["intercept"], a["classes"]
    logreg.n_features_in_ = n_columns
    logreg.n_iter_ = np.zeros(1, dtype=np.int32)
    pipeline = make_pipeline(scaler, logreg)
    return pipeline if len(a["classes"]) == n_classes else AllClasses(pipeline, n_classes)
