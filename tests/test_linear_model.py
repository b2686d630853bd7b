"""The logistic regression is stored as its fitted arrays (model.npz), never a pickle: a crafted pickle in any
place a bundle could carry one runs nothing, and an old joblib bundle converts only when the user says so."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinlesion import bundle, cli, features, linear_model
from skinlesion.bundle import Bundle
from skinlesion.errors import PipelineError
from skinlesion.io import read_json, write_json
from skinlesion.variant import of as variant
from conftest import records

FEATS = list(features.KNOWN)


class Gadget:
    """A pickle that, when loaded, creates the file `marker`: what a crafted model file would do."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "isic_id": [f"ISIC_{i:07d}" for i in range(n)],
        "age_approx": rng.uniform(20, 80, n), "age_approx_missing": False, "sex": rng.choice(["male", "female"], n),
        "clin_size_long_diam_mm": rng.uniform(1, 10, n), "clin_size_long_diam_mm_missing": False,
        "anatom_site_1": rng.choice(["Trunk", "Head & Neck"], n),
    })


def _fit(y: np.ndarray, seed: int = 0):
    x = features.matrix(_table(len(y), seed), FEATS)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y), x


def _bundle(folder: pathlib.Path, task: str, write_model) -> pathlib.Path:
    """A logreg bundle in `folder`: write_model(folder) writes its model file, then bundle.json is sealed."""
    folder.mkdir(parents=True, exist_ok=True)
    name = write_model(folder)
    v = variant({"name": "lr", "kind": "logreg", "task": task})
    info = bundle.manifest(v, input_size=None, imputation_means={}, training_data={"source": "local"}, weights={})
    bundle.seal(folder, {**info, "model_file": name})
    return folder


@pytest.mark.parametrize("task,y", [("binary", np.array([0, 1] * 40)),
                                    ("multiclass", np.array([0, 1, 2, 3, 4] * 16)),
                                    ("multiclass", np.array([0, 2, 3, 4] * 20))])  # class 1 never seen
def test_the_arrays_score_exactly_as_the_fitted_pipeline(tmp_path, task, y):
    model, x = _fit(y)
    n_classes = 2 if task == "binary" else 5
    if len(np.unique(y)) < n_classes:
        model = linear_model.AllClasses(model, n_classes)
    b = _bundle(tmp_path / "b", task, lambda f: linear_model.save(f / "model.npz", model, FEATS, n_classes)
                or "model.npz")
    probs = Bundle(b).predict(_table(len(y)))
    want = model.predict_proba(x)
    assert np.array_equal(probs, want[:, 1] if task == "binary" else want)  # the same numbers, not close ones
    with np.load(b / "model.npz", allow_pickle=False) as npz:  # plain arrays, loadable without pickle
        assert set(npz.files) == linear_model.KEYS


def _pickled(obj, name="model.joblib"):
    def write(folder):
        (folder / name).write_bytes(pickle.dumps(obj))
        return name
    return write


def _score(command: str, b: pathlib.Path, tmp_path: pathlib.Path, make_raw) -> list[str]:
    """The command line of predict (over a metadata CSV) or recalibrate (over a labelled set) for bundle b."""
    if command == "predict":
        return ["predict", str(b), "--metadata", str(_csv(tmp_path)), "-o", str(tmp_path / "out.csv")]
    clinic = make_raw(records(12), name="clinic")
    return ["recalibrate", str(b), str(clinic), "--target-sensitivity", "0.8", "-o", str(tmp_path / "out.csv"),
            "--bootstrap", "0", "--cv", "2"]


@pytest.mark.parametrize("command", ["predict", "recalibrate"])
def test_a_pickle_gadget_named_as_the_model_runs_nothing(tmp_path, capsys, command, make_raw):
    marker = tmp_path / "marker"
    b = _bundle(tmp_path / "b", "binary", _pickled({"model": Gadget(marker)}))
    rc = cli.main(_score(command, b, tmp_path, make_raw))
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists() and not (tmp_path / "out.csv").exists()
    assert "model.joblib is a pickle" in err and "convert-bundle" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["predict", "recalibrate"])
def test_a_pickle_gadget_renamed_model_npz_runs_nothing(tmp_path, capsys, command, make_raw):
    marker = tmp_path / "marker"
    b = _bundle(tmp_path / "b", "binary", _pickled(Gadget(marker), name="model.npz"))
    rc = cli.main(_score(command, b, tmp_path, make_raw))
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists() and not (tmp_path / "out.csv").exists()
    assert "not a model.npz archive" in err and "Traceback" not in err


def test_an_object_array_inside_model_npz_is_not_unpickled(tmp_path, capsys):
    marker = tmp_path / "marker"
    model, _ = _fit(np.array([0, 1] * 40))
    arrays = linear_model.arrays(model, FEATS, 2)
    arrays["coef"] = np.array([Gadget(marker)], dtype=object)  # np.save pickles object arrays

    def write(folder):
        np.savez(folder / "model.npz", **arrays)
        return "model.npz"

    b = _bundle(tmp_path / "b", "binary", write)
    rc = cli.main(["predict", str(b), "--metadata", str(_csv(tmp_path)), "-o", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert "without unpickling" in err and "Traceback" not in err


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(coef=a["coef"][:, :-1]), "array 'coef'"),
    (lambda a: a.update(intercept=np.array([np.nan])), "array 'intercept'"),
    (lambda a: a.update(features=np.array(["age_approx"])), "fitted on features"),
    (lambda a: a.update(n_classes=np.array(5)), "array 'n_classes'"),
    (lambda a: a.update(classes=np.array([1, 0])), "array 'classes'"),
    (lambda a: a.update(extra=np.zeros(3)), "expected exactly"),
    (lambda a: a.pop("scaler_var"), "expected exactly"),
    (lambda a: a.update(scaler_scale=np.zeros_like(a["scaler_scale"])), "array 'scaler_scale'"),
])
def test_malformed_arrays_give_one_line_naming_the_array(tmp_path, change, message):
    model, _ = _fit(np.array([0, 1] * 40))
    arrays = linear_model.arrays(model, FEATS, 2)
    change(arrays)

    def write(folder):
        np.savez(folder / "model.npz", **arrays)
        return "model.npz"

    b = _bundle(tmp_path / "b", "binary", write)
    with pytest.raises(PipelineError, match=message):
        Bundle(b).predict(_table(4))


def _csv(tmp_path) -> pathlib.Path:
    path = tmp_path / "meta.csv"
    table = _table(6).drop(columns=["age_approx_missing", "clin_size_long_diam_mm_missing"])
    table.to_csv(path, index=False)
    return path


def _old(folder: pathlib.Path, model_obj, task: str = "binary") -> pathlib.Path:
    """A bundle as skinlesion wrote it before format 2: model.joblib (a pickle) and no `files`."""
    import joblib

    folder.mkdir(parents=True)
    joblib.dump({"model": model_obj, "features": FEATS, "task": task}, folder / "model.joblib")
    v = variant({"name": "lr", "kind": "logreg", "task": task})
    info = bundle.manifest(v, input_size=None, imputation_means={}, training_data={"source": "local"}, weights={})
    write_json(folder / bundle.MANIFEST, {**info, "format": 1, "model_file": "model.joblib"})
    return folder


def test_an_old_joblib_bundle_is_refused_and_converts_only_when_trusted(tmp_path, capsys):
    y = np.array([0, 1, 1] * 30)
    model, x = _fit(y, seed=3)
    old = _old(tmp_path / "old", model)
    before = {p.name: p.read_bytes() for p in old.iterdir()}

    rc = cli.main(["predict", str(old), "--metadata", str(_csv(tmp_path)), "-o", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "bundle format 1" in err and "convert-bundle" in err and "--trust-pickle" in err

    new = tmp_path / "new"
    assert cli.main(["convert-bundle", str(old), "-o", str(new)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not new.exists()

    assert cli.main(["convert-bundle", str(old), "-o", str(new), "--trust-pickle"]) == 0
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # the old bundle is never modified
    assert sorted(p.name for p in new.iterdir()) == ["bundle.json", "model.npz"]
    info = read_json(new / bundle.MANIFEST)
    assert info["format"] == bundle.FORMAT and info["model_file"] == "model.npz"
    got = Bundle(new).predict(_table(len(y), seed=3))
    assert np.max(np.abs(got - model.predict_proba(x)[:, 1])) <= 1e-9


def test_convert_without_trust_unpickles_nothing(tmp_path, capsys):
    marker = tmp_path / "marker"
    old = _old(tmp_path / "old", Gadget(marker))
    assert cli.main(["convert-bundle", str(old), "-o", str(tmp_path / "new")]) == 2
    assert not marker.exists() and not (tmp_path / "new").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_convert_refuses_a_model_that_is_not_the_pipeline(tmp_path, capsys):
    """A trusted pickle that is not a StandardScaler + LogisticRegression pipeline is not silently converted."""
    from sklearn.dummy import DummyClassifier

    dummy = DummyClassifier(strategy="prior").fit(np.zeros((10, 1)), [0, 1] * 5)
    old = _old(tmp_path / "old", dummy)
    assert cli.main(["convert-bundle", str(old), "-o", str(tmp_path / "new"), "--trust-pickle"]) == 2
    err = capsys.readouterr().err
    assert "skinlesion convert-bundle: error:" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()
