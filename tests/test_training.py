"""The train stage on a tiny synthetic run: every variant kind trains and evaluates; the data
strategies, fine-tuning, the features-once path, early stopping and multiclass with absent classes.

One small dataset (synthetic source, 32 px images) is built once for the module; each variant trains
for a couple of epochs. MobileNetV2 uses the offline ImageNet weights when they exist, else random
weights (the synthetic source allows that).
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import MOBILENET_WEIGHTS, base_params
from skinlesion import evaluation, images, metadata, tasks, training
from skinlesion.params import validate
from skinlesion.sources import fetch

pytestmark = pytest.mark.timeout(600)

FAST = {"epochs": 3, "patience": 2}
FROZEN = {"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "freeze": True, "dense_units": 16}
TOP = "block_13_expand"


def tiny_params(variants: dict) -> dict:
    params = copy.deepcopy(base_params())
    params["data"] = {"source": "synthetic", "synthetic": {"n_patients": 70, "images_per_patient": [1, 2],
                                                          "image_size": 48, "malignant_fraction": 0.4}}
    params["images"] = {"size": 32, "shard_size": 64, "workers": 1}
    weights_file = str(MOBILENET_WEIGHTS) if MOBILENET_WEIGHTS.exists() else None
    params["train"].update({"epochs": 3, "patience": 2, "weights": {"mobilenet_v2": weights_file, "resnet50": None}})
    for key, value in {"bootstrap": 0, "gradcam_per_outcome": 0}.items():
        if key in params["evaluate"]:  # keep evaluation light where it has these knobs
            params["evaluate"][key] = value
    params["variants"] = variants
    return validate(params)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("SKINLESION_OFFLINE", "1")
    # An empty Keras cache: weights found in the machine's ~/.keras/models would make ResNet50 "ImageNet".
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    params = tiny_params({"logreg": {"kind": "logreg", "task": "binary"}})
    fetch(params, root / "raw")
    metadata.run(root / "raw", root / "metadata.parquet", params)
    images.run(root / "metadata.parquet", root / "raw", root / "shards", params)
    return root


def train(data, name: str, variant: dict, table=None):
    params = tiny_params({name: variant})
    out = data / "models" / name
    info = training.run(params, name, table or data / "metadata.parquet", data / "shards", out,
                        summary_path=data / "metadata_summary.json")
    return params, info, out


def train_and_evaluate(data, name: str, variant: dict, table=None):
    params, info, out = train(data, name, variant, table)
    result = evaluation.run(params, name, out, table or data / "metadata.parquet", data / "shards",
                            data / "results" / name)
    return info, out, result


def _sane_binary(result: dict) -> None:
    for test_set in ("test_natural", "val"):  # issue 11: no class-balanced test set any more
        m = result[test_set]
        assert m["n"] > 0
        assert 0 <= m["sensitivity"] <= 1 and 0 <= m["specificity"] <= 1
        assert m["roc_auc"] is None or 0 <= m["roc_auc"] <= 1


@pytest.mark.parametrize("name,variant", [
    ("logreg", {"kind": "logreg", "task": "binary"}),
    ("mlp", {"kind": "mlp", "task": "binary", "hidden_units": [8, 4], "dropout": 0.2, **FAST}),
    ("cnn", {"kind": "cnn", "task": "binary", "filters": [4, 8], "dense_units": 8, **FAST}),
    ("dual", {**FROZEN, "kind": "dual", **FAST}),
])
def test_each_kind_trains_and_evaluates(data, name, variant, caplog):
    caplog.set_level("INFO", logger="skinlesion.training")
    info, out, result = train_and_evaluate(data, name, variant)
    assert (out / "train.json").exists() and (out / "history.csv").exists()
    assert (out / ("model.npz" if name == "logreg" else "model.keras")).exists()
    # wall seconds go to the log, never into the model folder (its bytes and DVC hash must not vary)
    assert not (out / "timing.json").exists()
    done = re.search(rf"train {name}: done in ([0-9.]+) s .*seconds per phase", caplog.text)
    assert done and float(done.group(1)) >= 0  # a metadata fit can take under 5 ms
    _sane_binary(result)
    history = pd.read_csv(out / "history.csv")
    if name == "logreg":
        assert history.empty
    else:  # loss and metric per epoch, train and validation
        assert {"epoch", "phase", "loss", "val_loss", "auc", "val_auc"} <= set(history.columns)
        assert len(history) == info["epochs_run"] >= 1
    if name == "dual":
        assert info["features"] == ["age_approx", "sex", "clin_size_long_diam_mm", "anatom_site_1"]
        assert info["features_once"] is True


def test_frozen_backbone_computes_features_once_and_keeps_the_best_epoch(data, monkeypatch):
    """Timing-free proof: the frozen backbone sees each train and val image exactly once, and every
    fit() gets pooled feature vectors, never images. And the saved model is the best-val-loss epoch's,
    not the last one's (Keras 3's EarlyStopping restores the best weights at the end of fit)."""
    import keras
    from sklearn.metrics import log_loss

    from skinlesion.bundle import Bundle

    calls = {"predict": [], "fit": []}
    predict, fit = keras.Model.predict, keras.Model.fit

    def spy_predict(self, x, *args, **kwargs):
        calls["predict"].append((self.name, np.shape(x)))
        return predict(self, x, *args, **kwargs)

    def spy_fit(self, x=None, *args, **kwargs):
        calls["fit"].append((self.name, [np.shape(a) for a in (x if isinstance(x, list) else [x])]))
        return fit(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "predict", spy_predict)
    monkeypatch.setattr(keras.Model, "fit", spy_fit)
    _, info, out = train(data, "frozen", {**FROZEN, "learning_rate": 0.01, "epochs": 12, "patience": 3})
    extracted = [shape for name, shape in calls["predict"] if name == "features"]
    assert [s[0] for s in extracted] == [info["n_train"], info["n_val"]]  # once per image, not per epoch
    assert all(len(s) == 4 for s in extracted)  # images in
    assert calls["fit"] and all(name == "head" for name, _ in calls["fit"])
    assert all(len(shape) == 2 for _, shapes in calls["fit"] for shape in shapes)  # feature vectors, not images
    assert info["features_once"] is True and info["epochs_run"] >= 2

    history = pd.read_csv(out / "history.csv")
    assert {"epoch", "phase", "loss", "auc", "val_loss", "val_auc"} <= set(history.columns)
    assert len(history) == info["epochs_run"]
    assert info["best_val_loss"] == pytest.approx(history["val_loss"].min(), abs=1e-5)
    assert info["best_epoch"] == int(history["epoch"][history["val_loss"].idxmin()])
    splits = training.dataset.load_splits(data / "metadata.parquet", data / "shards", "binary")
    p_val = Bundle(out).predict(splits["val"].table, splits["val"].images())
    assert log_loss(splits["val"].labels("binary"), p_val, labels=[0, 1]) == pytest.approx(info["best_val_loss"],
                                                                                          abs=2e-3)


def test_flip_only_augmentation_is_computed_once_per_flip(data, monkeypatch):
    """Flips have four outcomes: the frozen bottom of the backbone runs once on each flip of each training
    image (and once on val), and each epoch of the warm-up and of fine-tuning trains on one flip per
    image, drawn at random (here with the dual-input model)."""
    import keras

    predicted, fitted = [], []
    predict, fit = keras.Model.predict, keras.Model.fit

    def spy_predict(self, x, *args, **kwargs):
        predicted.append((self.name, np.asarray(x).copy()))
        return predict(self, x, *args, **kwargs)

    def spy_fit(self, x=None, *args, **kwargs):
        fitted.append((self.name, x))
        return fit(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "predict", spy_predict)
    monkeypatch.setattr(keras.Model, "fit", spy_fit)
    variant = {**FROZEN, "kind": "dual", "augment": {"flip": True}, "freeze": False,
               "fine_tune": {"warmup_epochs": 2, "unfreeze_from": TOP, "epochs": 1}}
    _, info, _ = train(data, "flips", variant)
    images = [x for name, x in predicted if name == "bottom_features"]
    assert [len(x) for x in images] == [info["n_train"]] * 4 + [info["n_val"]]
    first = images[0]
    assert np.array_equal(images[1], first[:, :, ::-1]) and np.array_equal(images[2], first[:, ::-1])
    assert np.array_equal(images[3], first[:, ::-1, ::-1])
    assert not [name for name, _ in predicted if name not in ("bottom_features", "features")]  # no image model
    assert [name for name, _ in fitted] == ["head", "top_and_head"]
    assert all(isinstance(x, keras.utils.PyDataset) for _, x in fitted)
    (feats, meta), y = fitted[0][1][0]
    assert feats.ndim == 2 and len(feats) == len(meta) == len(y) <= 32
    (acts, meta), y = fitted[1][1][0]
    assert acts.ndim == 4 and len(acts) == len(meta) == len(y)
    assert info["features_once"] is True and all("4 flips" in p["inputs"] for p in info["phases"])


def test_fine_tune_unfreezes_the_top_at_the_lower_rate(data, monkeypatch):
    """Warm-up on the frozen backbone at lr, then the layers from block_13_expand on (BatchNorm excepted)
    at the fine-tuning lr; the bottom's activations are computed once (no augmentation)."""
    compiled = []
    original = training._compile

    def spy(model, cfg, learning_rate):
        compiled.append((model.name, learning_rate, len(model.trainable_weights)))
        return original(model, cfg, learning_rate)

    monkeypatch.setattr(training, "_compile", spy)
    variant = {**FROZEN, "freeze": False, "epochs": 2,
               "fine_tune": {"warmup_epochs": 2, "learning_rate": 0.0002, "unfreeze_from": TOP, "epochs": 2}}
    _, info, out = train(data, "finetune", variant)
    assert [(name, lr) for name, lr, _ in compiled] == [("head", 0.001), ("top_and_head", 0.0002)]
    assert compiled[1][2] > compiled[0][2]  # more trainable weights once the top is unfrozen
    assert [p["phase"] for p in info["phases"]] == ["frozen", "fine_tune"]
    assert info["phases"][1]["learning_rate"] == 0.0002 and info["phases"][1]["unfrozen_from"] == TOP
    assert info["phases"][1]["inputs"].startswith("backbone activations below block_13_expand")

    import keras

    model = keras.models.load_model(out / "model.keras", compile=False)
    base = model.get_layer("backbone_mobilenet_v2")
    names = [layer.name for layer in base.layers]
    start = names.index(TOP)
    assert not any(layer.trainable for layer in base.layers[:start] if layer.weights)
    top = [layer for layer in base.layers[start:] if layer.weights]
    assert all(layer.trainable for layer in top if not isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable for layer in top if isinstance(layer, keras.layers.BatchNormalization))
    assert set(info["fine_tune"]["trainable_layers"]) == {
        layer.name for layer in top if not isinstance(layer, keras.layers.BatchNormalization)}
    assert info["kept_phase"] in ("frozen", "fine_tune")
    history = pd.read_csv(out / "history.csv")
    assert list(history["phase"]) == ["frozen"] * info["phases"][0]["epochs_run"] + \
        ["fine_tune"] * info["phases"][1]["epochs_run"]
    assert list(history["epoch"]) == list(range(1, len(history) + 1))


def test_features_from_several_depths_train_once_and_score_as_saved(data):
    """pool_from: the frozen backbone's block_6 activations are pooled beside its output (192 + 1280
    features), computed once like any frozen variant's; the saved bundle gives evaluate's scores again."""
    from skinlesion.bundle import Bundle

    variant = {**FROZEN, "kind": "dual", "pool_from": ["block_6_expand_relu"], **FAST}
    info, out, result = train_and_evaluate(data, "depths", variant)
    _sane_binary(result)
    assert info["features_once"] is True
    model = Bundle(out).model
    assert model.get_layer("head").inputs[0].shape[-1] == 1280 + 192
    assert json.loads((out / "bundle.json").read_text())["variant_config"]["pool_from"] == ["block_6_expand_relu"]
    splits = training.dataset.load_splits(data / "metadata.parquet", data / "shards", "binary")
    predictions = pd.read_csv(data / "results" / "depths" / "predictions.csv")
    scored = predictions[predictions["split"] == "test"].set_index("isic_id")["p_malignant"]
    test = splits["test"]
    p = Bundle(out).predict(test.table, test.images())
    np.testing.assert_allclose(p, scored.loc[test.table["isic_id"]].to_numpy(), atol=2e-6)


@pytest.mark.parametrize("variant,message", [
    ({**FROZEN, "pool_from": ["no_such_layer"]}, "mobilenet_v2 has no layer named 'no_such_layer'"),
    ({**FROZEN, "freeze": False, "pool_from": ["block_6_expand_relu"]}, "pool_from needs a frozen backbone"),
    ({**FROZEN, "pool_from": ["out_relu"]}, "'out_relu' is mobilenet_v2's own output"),
])
def test_pool_from_refuses_what_it_cannot_do(data, variant, message):
    from skinlesion.errors import PipelineError

    with pytest.raises(PipelineError, match=message):
        train(data, "bad_depths", variant)


def test_augmentation_trains_the_full_model_on_images(data, monkeypatch):
    """With augmentation nothing can be cached: frozen warm-up and fine-tuning fit the image model."""
    import keras

    fitted = []
    fit = keras.Model.fit

    def spy_fit(self, x=None, *args, **kwargs):
        fitted.append((self.name, np.ndim(x)))
        return fit(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy_fit)
    variant = {**FROZEN, "freeze": False, "augment": {"flip": True, "rotation": 0.1, "zoom": 0.1},
               "fine_tune": {"warmup_epochs": 1, "unfreeze_from": -20, "epochs": 1}}
    _, info, _ = train(data, "finetune_aug", variant)
    assert fitted == [("finetune_aug", 4), ("finetune_aug", 4)]
    assert info["features_once"] is False
    assert [p["inputs"] for p in info["phases"]] == ["images (augmented)"] * 2
    assert info["phases"][1]["learning_rate"] == pytest.approx(0.0001)  # default: lr / 10


def test_resnet50_without_weights_is_random_and_says_so(data):
    variant = {**FROZEN, "backbone": "resnet50", "epochs": 1}
    info, out, result = train_and_evaluate(data, "resnet", variant)
    assert info["imagenet_weights"] is False and "RANDOM" in info["weights"]
    saved = json.loads((out / "train.json").read_text())
    assert saved["imagenet_weights"] is False and "RANDOM" in saved["weights"]
    assert result["imagenet_weights"] is False and "RANDOM" in result["weights"]
    metrics = json.loads((data / "results" / "resnet" / "evaluation.json").read_text())
    assert metrics["imagenet_weights"] is False and "RANDOM" in metrics["weights"]


def test_balanced_and_class_weighted_training_sets(data):
    table = pd.read_parquet(data / "metadata.parquet")
    y = table.loc[table["split"] == "train", "label"].to_numpy(dtype=int)
    _, info, _ = train(data, "balanced", {"kind": "logreg", "task": "binary",
                                          "sampling": {"strategy": "balanced", "per_class": None}})
    smallest = int(np.bincount(y).min())
    assert info["train_class_counts"] == {"benign": smallest, "malignant": smallest}
    assert info["class_weight"] is None

    _, info, _ = train(data, "weighted", {"kind": "mlp", "task": "binary", "epochs": 1,
                                          "sampling": {"strategy": "class_weight"}})
    counts = np.bincount(y)
    expected = {c: len(y) / (2 * counts[c]) for c in (0, 1)}
    assert {int(k): v for k, v in info["class_weight"].items()} == pytest.approx(expected)
    assert info["n_train"] == len(y)


def _without_metastasis(data, splits: tuple[str, ...]):
    """A copy of the metadata table with melanoma metastasis dropped from the given splits."""
    table = pd.read_parquet(data / "metadata.parquet")
    metastasis = table["label_multiclass"] == 3
    path = data / f"metadata-no-metastasis-{'-'.join(splits)}.parquet"
    table[~(metastasis & table["split"].isin(splits))].to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["logreg", "transfer"])
def test_multiclass_with_a_class_absent_from_train(data, kind):
    """logreg (scikit-learn drops unseen classes: padded back to five) and the fine-tuned transfer model."""
    table = _without_metastasis(data, ("train",))
    variant = {"kind": "logreg", "task": "multiclass"} if kind == "logreg" else \
        {**FROZEN, "task": "multiclass", "freeze": False,
         "fine_tune": {"warmup_epochs": 1, "unfreeze_from": TOP, "epochs": 1}}
    info, out, result = train_and_evaluate(data, f"multi_{kind}", variant, table)
    assert info["absent_train_classes"] == ["melanoma_metastasis"]
    assert "melanoma_metastasis" not in info["train_class_counts"]
    predictions = pd.read_csv(data / "results" / f"multi_{kind}" / "predictions.csv")
    columns = [f"p_{c}" for c in tasks.get("multiclass").classes]
    assert all(c in predictions for c in columns)  # one probability per class, absent or not
    assert np.allclose(predictions[columns].sum(axis=1), 1, atol=1e-3)
    if kind == "transfer":
        history = pd.read_csv(out / "history.csv")
        assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.columns)
        assert list(history["phase"].unique()) == ["frozen", "fine_tune"]
    for test_set in ("test_natural", "val"):  # issue 11: no class-balanced test set any more
        m = result[test_set]
        assert 0 <= m["balanced_accuracy"] <= 1
        assert set(m["recall"]) == set(tasks.get("multiclass").classes)
        for name in m["absent_classes"]:
            assert m["recall"][name] == "absent"


def test_multiclass_with_a_class_absent_everywhere_is_reported_absent(data):
    table = _without_metastasis(data, ("train", "val", "test"))
    info, _, result = train_and_evaluate(data, "multi_absent", {**FROZEN, "task": "multiclass", "epochs": 2}, table)
    assert info["absent_train_classes"] == ["melanoma_metastasis"]
    for test_set in ("test_natural", "val"):
        assert "melanoma_metastasis" in result[test_set]["absent_classes"]
        assert result[test_set]["recall"]["melanoma_metastasis"] == "absent"
