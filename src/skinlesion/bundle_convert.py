"""Convert a bundle written before format 2 (no file sha256s, the logistic regression as a joblib pickle)
into a current one: `skinlesion convert-bundle OLD -o NEW [--trust-pickle]`.

Loading a pickle runs whatever code it holds, so a model.joblib is unpickled only when the user says, for
this one bundle, that they trust where it came from (--trust-pickle), with a warning; its arrays are then
written as model.npz (skinlesion.linear_model) and the new bundle's scores are checked against the old
model's on probe inputs before the new bundle is put in place. A Keras model is copied as it is (it is
loaded in safe mode whenever it is used). The old bundle is never modified.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from . import bundle as B
from . import features, linear_model, tasks
from .errors import PipelineError
from .io import atomic_path

log = logging.getLogger(__name__)
TOLERANCE = 1e-9  # the converted logistic regression's probabilities against the unpickled one's


def _manifest(old: Path) -> dict:
    where = f"bundle {old}"
    with B._open_plain(old / B.MANIFEST, f"{where}: {B.MANIFEST}", B.MAX_MANIFEST) as f:
        raw = f.read(B.MAX_MANIFEST + 1)
    try:
        info = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise PipelineError(f"{where}: {B.MANIFEST} is not valid JSON ({B._one_line(exc)})") from None
    if not isinstance(info, dict) or not isinstance(info.get("model_file"), str):
        raise PipelineError(f"{where}: {B.MANIFEST} is not a bundle manifest (a JSON object with model_file)")
    name = info["model_file"]
    if name in ("", ".", "..") or "/" in name or "\\" in name or name == B.MANIFEST:
        raise PipelineError(f"{where}: field 'model_file': {name!r:.80} is not a plain file name inside the bundle")
    return info


def _unpickle(path: Path, where: str):
    log.warning("%s: unpickling %s with joblib because --trust-pickle was given: a pickle runs any code it "
                "holds; do this only for a bundle from a source you trust", where, path.name)
    import joblib

    saved = joblib.load(path)
    return saved["model"] if isinstance(saved, dict) and "model" in saved else saved


def _probe(n_columns: int) -> np.ndarray:
    """Inputs the converted model must score as the old one did: zeros, and draws around the scaler's range."""
    rng = np.random.default_rng(0)
    return np.vstack([np.zeros((1, n_columns)), rng.normal(0, 3, size=(255, n_columns))])


def convert(old: str | os.PathLike, out: str | os.PathLike, trust_pickle: bool = False) -> Path:
    """Write `out`, a format-2 bundle holding the same model as the bundle folder `old`."""
    old, out = Path(old), Path(out)
    if not old.is_dir():
        raise PipelineError(f"{old} is not a bundle folder")
    if out.resolve() == old.resolve():
        raise PipelineError(f"{out}: give a new folder for the converted bundle (the old one is never modified)")
    where = f"bundle {old}"
    info = _manifest(old)
    name = info["model_file"]
    names = B._entries(old, where)
    if name not in names:
        raise PipelineError(f"{where}: {name} (its model_file) is missing: the bundle is incomplete")
    pickled = Path(name).suffix in B.PICKLES
    if pickled and not trust_pickle:
        raise PipelineError(f"{where}: {name} is a pickle, which runs any code it holds when loaded; it is "
                            "unpickled only with --trust-pickle, for a bundle from a source you trust")
    with atomic_path(out, mark=B.MANIFEST) as tmp:
        tmp.mkdir(parents=True)
        def copy(file: str) -> None:  # a plain file of the old bundle, never through a link
            with B._open_plain(old / file, f"{where}: {file}", B.MAX_FILE) as src, open(tmp / file, "wb") as dst:
                shutil.copyfileobj(src, dst)

        for other in names:
            if other != name:
                copy(other)
        if pickled:
            model = _unpickle(old / name, where)
            meta = info.get("metadata") or {}
            feats = list(meta.get("features") or [])
            task = tasks.get(str(info.get("task")))
            n_columns = len(features.column_names(feats))
            new_name = "model.npz"
            linear_model.save(tmp / new_name, model, feats, len(task.classes))
            rebuilt = linear_model.load(tmp / new_name, f"{out}: {new_name}", feats, len(task.classes), n_columns)
            probe = _probe(n_columns)
            gap = float(np.max(np.abs(np.asarray(rebuilt.predict_proba(probe), dtype=np.float64)
                                      - np.asarray(model.predict_proba(probe), dtype=np.float64))))
            if gap > TOLERANCE:
                raise PipelineError(f"{where}: the converted model scores differ from the pickled one's by {gap:.2e} "
                                    f"(over {TOLERANCE}); it is not a StandardScaler + LogisticRegression pipeline")
            log.info("%s: %s -> %s, probabilities equal to %.1e on %d probe rows", where, name, new_name, gap,
                     len(probe))
            name = new_name
        else:
            copy(name)
        B.seal(tmp, {**info, "model_file": name})
        loaded = B.Bundle(tmp)  # the new bundle passes every check a user's predict makes
        _ = loaded.model
    return out
