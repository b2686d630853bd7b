"""The train stage: fit one variant on the train split, early-stopped on the val split.

    models/<variant>/model.keras | model.npz      the trained model (predicts from raw inputs)
    models/<variant>/history.csv                  loss and metric per epoch and phase (DVC plot data)
    models/<variant>/train.json                   what was trained, on what, with which weights, per phase
    models/<variant>/bundle.json                  what scoring needs (skinlesion.bundle; evaluate completes it)
(Wall seconds of the stage and each phase go to the log only: a model's bytes and DVC hash must not
depend on how long it took.)

Keras variants train with Adam, early stopping on validation loss (`patience`) restoring the best
weights (Keras 3's EarlyStopping restores them at the end of every fit, stopped early or not).

Transfer and dual variants never run a frozen part of the backbone more than once per image when
nothing random (augmentation) sits in front of it:
  - frozen backbone, no augmentation: pooled features are computed once, the head trains on them;
  - fine-tuning the top of the backbone from a clean cut (`fine_tune.unfreeze_from`), no augmentation:
    the frozen bottom's activations are computed once, the top and the head train on them;
  - flip-only augmentation has four outcomes per image: the frozen part runs once on each flip, and
    every epoch trains on one flip per image drawn at random (what RandomFlip would feed it).
The trained layers are shared with the full image model, which is what gets saved, so prediction
always starts from raw images.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import bundle, dataset, devices, features, images, linear_model, metadata, overlap, sampling
from . import variant as V
from .errors import PipelineError
from .images import FLIPS, flipped  # noqa: F401  (one definition, shared with test-time augmentation)
from .io import atomic_path, make_keras_archive_reproducible, write_json, write_text
from .linear_model import AllClasses
from .reproducibility import seed_everything

log = logging.getLogger(__name__)
FEATURE_BATCH = 64  # batch size of the one-off feature / activation passes


def data_summary(summary_path: str | os.PathLike) -> dict:
    """The train means missing values were filled with, and the data's source, as the bundle records them."""
    summary = metadata.load_summary(summary_path, "the model bundle records its imputation means and data source")
    return {"imputation_means": summary["imputation_means_train"],
            "source": (summary.get("source") or {}).get("source", "unknown")}


def run(params: dict, name: str, table: str | os.PathLike, shards: str | os.PathLike, out: str | os.PathLike,
        summary_path: str | os.PathLike | None = None) -> dict:
    """summary_path: the metadata stage's summary, by default beside the table (<table>_summary.json)."""
    v = V.from_params(params, name)
    data = data_summary(summary_path or Path(table).with_name(Path(table).stem + "_summary.json"))
    seed = params["seed"]
    seed_everything(seed, tensorflow=v.kind.keras)
    splits = dataset.load_splits(table, shards, v.task)
    train, val = splits["train"], splits["val"]
    y_train_all = train.labels(v.task)
    rows, weights = sampling.apply(y_train_all, v.sampling, seed)
    train = dataset.Split(train.table.iloc[rows].reset_index(drop=True), train.shards_dir)
    log.info("train %s: %d training images (%s), %d validation", name, len(train), v.sampling.strategy, len(val))
    if len(train) == 0 or len(val) == 0:
        raise PipelineError(f"variant {name}: the train or val split is empty; use more data or other split fractions")
    names = list(v.task.classes)
    absent = sorted(set(range(len(names))) - set(train.labels(v.task).tolist()))
    if absent:
        log.warning("train %s: class(es) absent from the training set: %s; the model still has an output "
                    "for each (it is never the target)", name, [names[i] for i in absent])

    started = time.time()
    timing: dict = {}
    with atomic_path(out, mark="train.json") as tmp:
        tmp.mkdir(parents=True)
        if v.kind.name == "logreg":
            info = _fit_logreg(v, train, val, tmp, seed)
        else:
            setup = devices.setup(params["train"])
            try:
                with setup.scope():
                    info = _fit_keras(v, params["train"], data["source"], train, val, tmp, weights, seed, timing,
                                      setup)
            finally:
                devices.reset()
            info["devices"] = setup.describe()
        counts = pd.Series(train.labels(v.task)).value_counts().sort_index()
        info.update({
            "variant": name,  # its full settings: bundle.json's variant_config
            "classes": names,
            "n_train": len(train),
            "n_val": len(val),
            "train_class_counts": {names[int(k)]: int(v) for k, v in counts.items()},
            "absent_train_classes": [names[i] for i in absent],
            "class_weight": weights,
        })
        write_json(tmp / "train.json", info)
        # what the model saw, so a set scored or refitted on later can be checked against it (recalibrate)
        write_text(tmp / overlap.SEEN, json.dumps(overlap.record([train, val], with_pixels=v.kind.images),
                                                  sort_keys=True, separators=(",", ":")) + "\n")
        hashed = ["isic_id", v.task.label_column] + ([c for f in v.features for c in (f, f"{f}_missing")
                                                      if c in train.table] if v.kind.metadata else [])
        # How the shards' images were decoded (images stage's summary.json): predict decodes new photos the same way
        decoding = images.decoding_of(train.shards_dir) if v.kind.images else None
        bundle.seal(tmp, bundle.manifest(  # last: it records the sha256 of every other file
            v, input_size=info.get("input_size"), decoding=decoding, imputation_means=data["imputation_means"],
            training_data={"source": data["source"], "n_train": len(train), "n_val": len(val),
                           "class_counts": info["train_class_counts"],
                           "sha256": bundle.training_data_hash(train.table, hashed,
                                                               train.shards_dir if v.kind.images else None)},
            weights={"source": info.get("weights"), "imagenet": info.get("imagenet_weights"),
                     "backbone": v.backbone.name if v.backbone else None}))
    log.info("train %s: done in %.2f s (%s); seconds per phase: %s", name, time.time() - started,
             info.get("weights", "metadata only"), timing)
    if "devices" in info:
        log.info("train %s: trained on %s", name, info["devices"])
    return info


# ----------------------------------------------------------------------------------------------------
# logistic regression (scikit-learn)


def _fit_logreg(v: V.Variant, train: dataset.Split, val: dataset.Split, out: Path, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = list(v.features)
    y = train.labels(v.task)
    if len(np.unique(y)) < 2:
        raise PipelineError(f"variant {v.name}: the training set has a single class; nothing to learn")
    pipeline = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=v.C, max_iter=2000, random_state=seed,
                           class_weight="balanced" if v.sampling.strategy == "class_weight" else None),
    )
    pipeline.fit(features.matrix(train.table, feats), y)
    n_classes = len(v.task.classes)
    model = pipeline if len(pipeline.classes_) == n_classes else AllClasses(pipeline, n_classes)
    linear_model.save(out / v.kind.saved_as, model, feats, n_classes)  # arrays, never a pickle
    # No epochs to report: an empty table (header only) keeps the plot files uniform across variants.
    pd.DataFrame(columns=["epoch", "phase", "loss", "val_loss"]).to_csv(out / "history.csv", index=False)
    p_val = model.predict_proba(features.matrix(val.table, feats))
    val_loss = log_loss(val.labels(v.task), p_val, labels=list(range(n_classes)))
    return {"kind": v.kind.name, "features": feats, "weights": "not applicable (metadata model)",
            "imagenet_weights": None, "val_loss": round(float(val_loss), 6)}


# ----------------------------------------------------------------------------------------------------
# Keras models


def _callbacks(v: V.Variant) -> list:
    import keras

    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=v.patience, restore_best_weights=True)]


def _compile(model, v: V.Variant, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=v.task.loss, metrics=v.task.keras_metrics())


class _Phases:
    """Runs the fit of each training phase and keeps its history, best epoch and timing."""

    def __init__(self, v: V.Variant, class_weight, timing: dict, setup: devices.Setup | None = None):
        self.v = v
        self.setup = setup
        self.fit_args = dict(batch_size=v.batch_size, class_weight=class_weight, verbose=2, shuffle=True)
        self.frames: list[pd.DataFrame] = []
        self.info: list[dict] = []
        self.timing = timing

    @property
    def epochs_run(self) -> int:
        return int(sum(len(f) for f in self.frames))

    def fit(self, model, phase: str, x, y, x_val, y_val, epochs: int, learning_rate: float, **about) -> float:
        """Compile at `learning_rate`, fit with early stopping; the best validation loss reached."""
        _compile(model, self.v, learning_rate)
        if self.setup is not None:
            if self.setup.compile_args():  # train.xla true / false; "auto" leaves Keras' own choice
                model.jit_compile = self.setup.compile_args()["jit_compile"]
            self.setup.compiled_xla.append(bool(model.jit_compile))
        started = time.time()
        args = self.fit_args if y is not None else {k: v for k, v in self.fit_args.items() if k != "batch_size"}
        # a tf.data pipeline (train.input_pipeline: tf_data) carries its labels, batches and shuffling
        validation = (x_val, y_val) if y_val is not None else x_val
        if y_val is None:
            args = {k: v for k, v in args.items() if k != "shuffle"}
        hist = model.fit(x, y, validation_data=validation, epochs=epochs, callbacks=_callbacks(self.v),
                         **args)
        self.timing[f"{phase}_seconds"] = round(time.time() - started, 2)
        offset = self.epochs_run
        frame = pd.DataFrame(hist.history)
        frame.insert(0, "epoch", np.arange(offset + 1, offset + len(frame) + 1))
        frame.insert(1, "phase", phase)
        self.frames.append(frame)
        best = int(frame["val_loss"].to_numpy().argmin())  # EarlyStopping keeps the first minimum too
        self.info.append({"phase": phase, "learning_rate": learning_rate, "max_epochs": epochs,
                          "epochs_run": len(frame), "best_epoch": offset + best + 1,
                          "best_val_loss": round(float(frame["val_loss"].iloc[best]), 6), **about})
        return float(frame["val_loss"].iloc[best])

    def history(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True)


def _inputs(images_or_features, meta):
    return [images_or_features, meta] if meta is not None else images_or_features


def _timed_predict(model, x, timing: dict, key: str) -> np.ndarray:
    started = time.time()
    out = model.predict(x, batch_size=FEATURE_BATCH, verbose=0)
    timing[key] = round(timing.get(key, 0.0) + time.time() - started, 2)
    return out


def _once(model, x: np.ndarray, flips: bool, timing: dict, key: str) -> np.ndarray:
    """model's outputs for x: (n, ...), or (4, n, ...) for the four flips of every image."""
    if not flips:
        return _timed_predict(model, x, timing, key)
    return np.stack([_timed_predict(model, flipped(x, k), timing, key) for k in range(len(FLIPS))])


def _flip_batches(variants: np.ndarray, meta, y: np.ndarray, batch_size: int, seed: int):
    """A Keras PyDataset over precomputed outputs of the four flips of each image: every epoch, each
    image appears once, as one flip drawn at random. That is the distribution RandomFlip
    ("horizontal_and_vertical") feeds the network, without running the frozen part again."""
    import keras

    class FlipBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self._draw()

        def _draw(self):
            self.order = self.rng.permutation(len(y))
            self.flip = self.rng.integers(0, variants.shape[0], len(y))

        def __len__(self):
            return -(-len(y) // batch_size)

        def __getitem__(self, i):
            rows = self.order[i * batch_size:(i + 1) * batch_size]
            x = variants[self.flip[rows], rows]
            # a tuple of inputs (not a list): what tf.data's output signature of a PyDataset accepts
            return ((x, meta[rows]) if meta is not None else x), y[rows]

        def on_epoch_end(self):
            self._draw()

    return FlipBatches()


def _streams(v: V.Variant, train, val, y_train, y_val, meta_train, meta_val, seed: int):
    """(train, val) tf.data pipelines of images read from the shards (train.input_pipeline: tf_data)."""
    return (dataset.image_batches(train, y_train, meta_train, v.batch_size, True, seed),
            dataset.image_batches(val, y_val, meta_val, v.batch_size, False, seed))


def _fit_keras(v: V.Variant, train_cfg: dict, source: str, train, val, out: Path, class_weight, seed: int,
               timing: dict, setup: devices.Setup | None = None) -> dict:
    import keras

    from . import models

    y_train, y_val = train.labels(v.task), val.labels(v.task)
    phases = _Phases(v, class_weight, timing, setup)
    streaming = setup is not None and setup.input_pipeline == "tf_data"
    info: dict = {"kind": v.kind.name, "weights": "not applicable (trained from scratch)", "imagenet_weights": None}

    feats = list(v.features)
    meta_train = meta_val = meta_norm = None
    if v.kind.metadata:
        meta_train, meta_val = features.matrix(train.table, feats), features.matrix(val.table, feats)
        meta_norm = keras.layers.Normalization(name="normalize_metadata")
        meta_norm.adapt(meta_train)  # fitted on train only, stored in the model
        info["features"] = feats

    if v.kind.name not in ("mlp", "cnn", "transfer", "dual"):  # a kind declared without its fit here
        raise PipelineError(f"variant {v.name}: training has no fit for kind {v.kind.name} (skinlesion.training)")
    if v.kind.name == "mlp":
        model = models.mlp(v, meta_train.shape[1], meta_norm)
        phases.fit(model, "train", meta_train, y_train, meta_val, y_val, v.epochs, v.learning_rate)
    elif v.kind.name == "cnn" and streaming:  # fed by tf.data
        size = int(dataset._shape(train.shards_dir)[0])
        info["input_size"] = size
        model = models.cnn(v, size, seed)
        s_train, s_val = _streams(v, train, val, y_train, y_val, None, None, seed)
        phases.fit(model, "train", s_train, None, s_val, None, v.epochs, v.learning_rate,
                   inputs="images (tf.data from the shards)")
    else:
        x_train, x_val = train.images(), val.images()
        size = x_train.shape[1]
        info["input_size"] = size
        if v.kind.name == "cnn":
            model = models.cnn(v, size, seed)
            phases.fit(model, "train", x_train, y_train, x_val, y_val, v.epochs, v.learning_rate, inputs="images")
        else:
            streams = (lambda: _streams(v, train, val, y_train, y_val, meta_train, meta_val, seed)) \
                if streaming else None
            model = _fit_transfer(v, train_cfg, source, x_train, y_train, x_val, y_val, meta_train, meta_val,
                                  meta_norm, seed, phases, info, timing, streams)

    model.save(out / v.kind.saved_as)
    make_keras_archive_reproducible(out / v.kind.saved_as)  # same inputs and params -> same bytes
    history = phases.history()
    history.to_csv(out / "history.csv", index=False, float_format="%.6g")
    kept = min(phases.info, key=lambda p: p["best_val_loss"]) if info.get("kept_phase") is None else \
        next(p for p in phases.info if p["phase"] == info["kept_phase"])
    info.update({"phases": phases.info, "epochs_run": phases.epochs_run,
                 "best_epoch": kept["best_epoch"], "best_val_loss": kept["best_val_loss"]})
    return info


def _fit_transfer(v: V.Variant, train_cfg: dict, source: str, x_train, y_train, x_val, y_val, meta_train, meta_val,
                  meta_norm, seed, phases: _Phases, info: dict, timing: dict, streams=None):
    """Transfer (and dual-input) models: frozen phase, then optionally fine-tuning the backbone's top."""
    from . import models, weights

    size = x_train.shape[1]
    name = v.backbone.name
    # Random weights are tolerated on synthetic data only (every output then says so).
    w = weights.resolve(name, (train_cfg.get("weights") or {}).get(name), size, allow_random=source == "synthetic")
    info.update({"weights": w.source, "imagenet_weights": w.imagenet, "backbone": name})
    base = models.backbone(name, size, w.keras_arg, v.pool_from)
    base.trainable = False
    n_meta = meta_train.shape[1] if meta_train is not None else 0
    augmented = v.augmented
    # Flips alone have four outcomes: their outputs can be computed once too, one drawn per image and epoch.
    flips = v.flips_only
    cacheable = not augmented or flips
    fine_tune = v.fine_tune is not None
    warmup = v.warmup_epochs
    info["features_once"] = cacheable
    head = models.head(models.feature_width(base), v, n_meta, meta_norm)
    once = "of the 4 flips of each image, computed once, one flip drawn per image and epoch" if flips \
        else "computed once"

    def train_inputs(computed):
        if flips:
            return _flip_batches(computed, meta_train, y_train, v.batch_size, seed), None
        return _inputs(computed, meta_train), y_train

    start = models.unfreeze_index(base, v.fine_tune.unfreeze_from) if fine_tune else 0
    cut = models.split_backbone(base, start) if fine_tune and cacheable else None
    if cut is not None:
        # Fine-tuning from a clean cut: the frozen bottom's activations never change. Compute them once;
        # the warm-up's pooled features come from them through the (still frozen) top.
        bottom, top = cut
        below = models.bottom_features(bottom, name, size)
        a_train = _once(below, x_train, flips, timing, "activations_seconds")
        a_val = _timed_predict(below, x_val, timing, "activations_seconds")
        extractor, f_source = models.pooled_top(top), (a_train, a_val)
    elif cacheable:
        extractor, f_source = models.pooled_features(base, name, size), (x_train, x_val)

    warm_best = np.inf
    if cacheable:
        # A frozen backbone without (random) augmentation computes the same features every epoch:
        # compute them once and train the head alone on them.
        if cut is not None and flips:  # the activations are already per flip: (4, n, ...)
            f_train = np.stack([_timed_predict(extractor, a, timing, "features_seconds") for a in f_source[0]])
        else:
            f_train = _once(extractor, f_source[0], flips, timing, "features_seconds")
        f_val = _timed_predict(extractor, f_source[1], timing, "features_seconds")
        if warmup > 0:
            x_fit, y_fit = train_inputs(f_train)
            warm_best = phases.fit(head, "frozen", x_fit, y_fit, _inputs(f_val, meta_val), y_val, warmup,
                                   v.learning_rate, inputs=f"pooled backbone features {once}")
            del x_fit
        del f_train, f_source
    model = models.transfer(v, size, base, head, n_meta, seed)
    if not cacheable and warmup > 0:
        if streams is not None:
            s_train, s_val = streams()
            warm_best = phases.fit(model, "frozen", s_train, None, s_val, None, warmup, v.learning_rate,
                                   inputs="images (augmented, tf.data from the shards)")
        else:
            warm_best = phases.fit(model, "frozen", _inputs(x_train, meta_train), y_train,
                                   _inputs(x_val, meta_val), y_val, warmup, v.learning_rate,
                                   inputs="images (augmented)")
    if not fine_tune:
        return model

    # (variable, value) pairs: restoring by variable cannot depend on the order of trainable flags
    warm_weights = [(var, var.numpy()) for var in model.weights] if np.isfinite(warm_best) else None
    trainable = models.set_trainable_from(base, start)
    lr, epochs = v.fine_tune.learning_rate, v.fine_tune.epochs
    about = {"unfrozen_from": base.layers[start].name, "unfrozen_from_index": start,
             "trainable_backbone_layers": len(trainable)}
    if cut is not None:
        tuner = models.top_model(top, head, n_meta)
        x_fit, y_fit = train_inputs(a_train)
        best = phases.fit(tuner, "fine_tune", x_fit, y_fit, _inputs(a_val, meta_val), y_val, epochs, lr,
                          inputs=f"backbone activations below {base.layers[start].name} {once}", **about)
        del a_train, x_fit
    elif streams is not None:
        s_train, s_val = streams()
        best = phases.fit(model, "fine_tune", s_train, None, s_val, None, epochs, lr,
                          inputs="images" + (" (augmented)" if augmented else "") + " (tf.data from the shards)",
                          **about)
    else:
        best = phases.fit(model, "fine_tune", _inputs(x_train, meta_train), y_train, _inputs(x_val, meta_val),
                          y_val, epochs, lr, inputs="images" + (" (augmented)" if augmented else ""), **about)
    if warm_weights is not None and best >= warm_best:
        # Fine-tuning never beat the frozen phase on validation loss: keep the frozen phase's best weights.
        log.info("train %s: fine-tuning did not improve validation loss (%.4f >= %.4f); keeping the frozen "
                 "phase's weights", v.name, best, warm_best)
        for variable, value in warm_weights:
            variable.assign(value)
        info["kept_phase"] = "frozen"
    else:
        info["kept_phase"] = "fine_tune"
    info["fine_tune"] = {"learning_rate": lr, **about, "trainable_layers": trainable}
    return model
