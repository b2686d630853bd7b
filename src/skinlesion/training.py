"""The train stage: fit one variant on the train split, early-stopped on the val split.

    models/<variant>/model.keras | model.joblib   the trained model (predicts from raw inputs)
    models/<variant>/history.csv                  loss and metric per epoch (DVC plot data)
    models/<variant>/train.json                   what was trained, on what, with which weights
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import dataset, features, labels, sampling
from . import params as P
from .io import atomic_path, write_json
from .reproducibility import seed_everything

log = logging.getLogger(__name__)
IMAGE_KINDS = ("cnn", "transfer", "dual")
META_KINDS = ("logreg", "mlp", "dual")


def class_names(task: str) -> list[str]:
    return labels.BINARY_CLASSES if task == "binary" else labels.CLASSES


def run(params: dict, name: str, table: str | os.PathLike, shards: str | os.PathLike, out: str | os.PathLike) -> dict:
    cfg = P.variant(params, name)
    seed = params["seed"]
    seed_everything(seed, tensorflow=cfg["kind"] != "logreg")
    splits = dataset.load_splits(table, shards, cfg["task"])
    train, val = splits["train"], splits["val"]
    y_train_all = train.labels(cfg["task"])
    rows, weights = sampling.apply(y_train_all, cfg["sampling"], seed)
    train = dataset.Split(train.table.iloc[rows].reset_index(drop=True), train.shards_dir)
    log.info("train %s: %d training images (%s), %d validation", name, len(train),
             cfg["sampling"].get("strategy", "natural"), len(val))
    if len(train) == 0 or len(val) == 0:
        from .errors import PipelineError

        raise PipelineError(f"variant {name}: the train or val split is empty; use more data or other split fractions")

    started = time.time()
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        if cfg["kind"] == "logreg":
            info = _fit_logreg(cfg, train, val, tmp, seed)
        else:
            info = _fit_keras(cfg, params, train, val, tmp, weights, seed)
        counts = pd.Series(train.labels(cfg["task"])).value_counts().sort_index()
        info.update({
            "variant": name,
            "config": cfg,
            "classes": class_names(cfg["task"]),
            "n_train": len(train),
            "n_val": len(val),
            "train_class_counts": {class_names(cfg["task"])[int(k)]: int(v) for k, v in counts.items()},
            "class_weight": weights,
        })
        write_json(tmp / "train.json", info)
        write_json(tmp / "timing.json", {"train_seconds": round(time.time() - started, 2)})
    log.info("train %s: done in %.1f s (%s)", name, time.time() - started, info.get("weights", "metadata only"))
    return info


def _fit_logreg(cfg: dict, train: dataset.Split, val: dataset.Split, out: Path, seed: int) -> dict:
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = cfg.get("features", features.DEFAULT_FEATURES)
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=cfg.get("C", 1.0), max_iter=2000, random_state=seed,
                           class_weight="balanced" if cfg["sampling"].get("strategy") == "class_weight" else None),
    )
    model.fit(features.matrix(train.table, feats), train.labels(cfg["task"]))
    joblib.dump({"model": model, "features": feats, "task": cfg["task"]}, out / "model.joblib")
    # No epochs to report: an empty table (header only) keeps the plot files uniform across variants.
    pd.DataFrame(columns=["epoch", "phase", "loss", "val_loss"]).to_csv(out / "history.csv", index=False)
    return {"kind": "logreg", "features": feats, "weights": "not applicable (metadata model)", "imagenet_weights": None}


def _callbacks(cfg: dict) -> list:
    import keras

    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg["patience"], restore_best_weights=True)]


def _compile(model, cfg: dict, learning_rate: float) -> None:
    import keras

    binary = cfg["task"] == "binary"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")] if binary else ["accuracy"],
    )


def _history(hist, phase: str, offset: int) -> pd.DataFrame:
    frame = pd.DataFrame(hist.history)
    frame.insert(0, "epoch", np.arange(offset + 1, offset + len(frame) + 1))
    frame.insert(1, "phase", phase)
    return frame


def _fit_keras(cfg, params, train, val, out: Path, class_weight, seed: int) -> dict:
    import keras

    from . import models, weights

    task = cfg["task"]
    n_classes = len(class_names(task))
    y_train, y_val = train.labels(task), val.labels(task)
    fit_args = dict(batch_size=cfg["batch_size"], class_weight=class_weight, verbose=2, shuffle=True)
    info: dict = {"kind": cfg["kind"], "weights": "not applicable (trained from scratch)", "imagenet_weights": None}
    histories = []

    feats = cfg.get("features", features.DEFAULT_FEATURES)
    meta_train = features.matrix(train.table, feats) if cfg["kind"] in META_KINDS else None
    meta_val = features.matrix(val.table, feats) if cfg["kind"] in META_KINDS else None

    if cfg["kind"] == "mlp":
        norm = keras.layers.Normalization(name="normalize")
        norm.adapt(meta_train)  # fitted on train only, stored in the model
        model = models.mlp(cfg, meta_train.shape[1], n_classes, norm)
        _compile(model, cfg, cfg["learning_rate"])
        hist = model.fit(meta_train, y_train, validation_data=(meta_val, y_val), epochs=cfg["epochs"],
                         callbacks=_callbacks(cfg), **fit_args)
        histories.append(_history(hist, "train", 0))
        info["features"] = feats
    else:
        x_train, x_val = train.images(), val.images()
        size = x_train.shape[1]
        if cfg["kind"] == "cnn":
            model = models.cnn(cfg, size, n_classes, seed)
            _compile(model, cfg, cfg["learning_rate"])
            hist = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=cfg["epochs"],
                             callbacks=_callbacks(cfg), **fit_args)
            histories.append(_history(hist, "train", 0))
        else:
            source = params["data"]["source"]
            w = weights.resolve(cfg["backbone"], (params["train"].get("weights") or {}).get(cfg["backbone"]),
                                size, allow_random=source == "synthetic")
            info.update({"weights": w.source, "imagenet_weights": w.imagenet})
            base = models.backbone(cfg["backbone"], size, w.keras_arg)
            base.trainable = False
            n_meta = meta_train.shape[1] if cfg["kind"] == "dual" else 0
            fine_tune = not cfg.get("freeze", True)
            warmup = (cfg.get("fine_tune") or {}).get("warmup_epochs", cfg["epochs"]) if fine_tune else cfg["epochs"]
            if not cfg.get("augment"):
                # A frozen backbone without augmentation computes the same features every epoch:
                # compute them once and train the head alone on them.
                extractor = models.pooled_features(base, cfg["backbone"], size)
                f_train = extractor.predict(x_train, batch_size=64, verbose=0)
                f_val = extractor.predict(x_val, batch_size=64, verbose=0)
                head = models.head(f_train.shape[1], cfg, n_classes, n_meta)
                _compile(head, cfg, cfg["learning_rate"])
                inputs_t = [f_train, meta_train] if n_meta else f_train
                inputs_v = [f_val, meta_val] if n_meta else f_val
                hist = head.fit(inputs_t, y_train, validation_data=(inputs_v, y_val), epochs=warmup,
                                callbacks=_callbacks(cfg), **fit_args)
                histories.append(_history(hist, "frozen", 0))
                model = models.transfer(cfg, size, n_classes, base, head, n_meta, seed)
            else:
                head = models.head(base.output_shape[-1], cfg, n_classes, n_meta)
                model = models.transfer(cfg, size, n_classes, base, head, n_meta, seed)
                _compile(model, cfg, cfg["learning_rate"])
                inputs_t = [x_train, meta_train] if n_meta else x_train
                inputs_v = [x_val, meta_val] if n_meta else x_val
                hist = model.fit(inputs_t, y_train, validation_data=(inputs_v, y_val), epochs=warmup,
                                 callbacks=_callbacks(cfg), **fit_args)
                histories.append(_history(hist, "frozen", 0))
            if fine_tune:
                ft = cfg.get("fine_tune") or {}
                base.trainable = True
                start = ft.get("unfreeze_from", 0)
                for layer in base.layers[:start]:
                    layer.trainable = False
                _compile(model, cfg, ft.get("learning_rate", cfg["learning_rate"] / 10))
                inputs_t = [x_train, meta_train] if n_meta else x_train
                inputs_v = [x_val, meta_val] if n_meta else x_val
                offset = len(histories[-1])
                hist = model.fit(inputs_t, y_train, validation_data=(inputs_v, y_val), epochs=cfg["epochs"],
                                 callbacks=_callbacks(cfg), **fit_args)
                histories.append(_history(hist, "fine_tune", offset))
            info["backbone"] = cfg["backbone"]
        info["input_size"] = size
    if meta_train is not None:
        info["features"] = feats
    model.save(out / "model.keras")
    history = pd.concat(histories, ignore_index=True)
    history.to_csv(out / "history.csv", index=False, float_format="%.6g")
    info["epochs_run"] = int(len(history))
    info["best_val_loss"] = float(history["val_loss"].min())
    return info
