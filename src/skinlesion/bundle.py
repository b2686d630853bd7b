"""The model bundle: one folder that scores new images on its own, on any machine.

    <bundle>/model.keras | model.joblib   the trained network (preprocessing inside) or scikit-learn pipeline
    <bundle>/bundle.json                  everything else scoring needs, and where the model came from:
        variant, kind, task, classes          what it predicts
        input                                 image size and how images are decoded and resized
                                              (skinlesion.images.load_image, as the images stage did), with
                                              the images stage's non-default options (aspect,
                                              colour_constancy, colour_constancy_p; absent = default)
        metadata                              the features, their column layout, and the train means that
                                              filled missing values (fitted by the metadata stage on train)
        training_data                         source (synthetic, local, isic), size, content sha256
        weights                               the backbone's weights and where they came from
        decision                              the threshold and calibration evaluate chose on validation, and
                                              its test-time augmentation (`tta`, absent = none)
                                              (null in models/<variant>: train cannot know them)
        recalibration                         only in a bundle `skinlesion recalibrate` wrote: where its
                                              decision was refitted, on what, and how well (recalibration.py)
        skinlesion_version, variant_config    the package and the variant's full settings

The train stage writes models/<variant>/ (decision null); the evaluate stage writes the complete bundle,
bundles/<variant>/, a copy with its decision filled in (its own output, so the DAG stays honest).
`skinlesion predict`, evaluate and Grad-CAM load a bundle through Bundle alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__, features, kinds, tasks
from .errors import PipelineError
from .images import FLIPS, Decoding, flipped
from .io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)
MANIFEST = "bundle.json"
FORMAT = 1
RESIZE = "skinlesion.images.load_image: decode (JPEG draft scaling), convert to RGB, bilinear resize to size x size"


def training_data_hash(table: pd.DataFrame, columns: list[str], shards_dir: str | os.PathLike | None) -> str:
    """sha256 of what the model was trained on: the training rows (ids, labels, metadata features) and the
    image shards they were read from."""
    digest = hashlib.sha256()
    digest.update(table[columns].to_csv(index=False).encode())
    if shards_dir is not None and "shard" in table:
        for shard in sorted(set(table["shard"].astype(int))):
            with open(Path(shards_dir) / f"shard-{shard:05d}.npy", "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


TTA = ("none", "flips")  # evaluate.tta: none, or the mean of the scores of the four flips of each image


def manifest(variant, *, input_size: int | None, imputation_means: dict, training_data: dict,
             weights: dict, decoding: Decoding | None = None) -> dict:
    """bundle.json as the train stage writes it (no decision yet). `decoding`: how the training images were
    decoded; only its non-default fields are written (none for the defaults: the same bytes as before)."""
    meta = None
    if variant.kind.metadata:
        meta = {"features": list(variant.features), "columns": features.column_names(list(variant.features)),
                "imputation_means": imputation_means,
                "note": "missing age_approx / clin_size_long_diam_mm are filled with imputation_means (the train "
                        "split's) and flagged in <column>_missing; missing sex scores 0.5, missing site "
                        "site_missing"}
    return {
        "format": FORMAT, "skinlesion_version": __version__,
        "variant": variant.name, "kind": variant.kind.name, "task": variant.task.name,
        "classes": list(variant.task.classes), "model_file": variant.kind.saved_as,
        "input": {"image_size": input_size, "resize": RESIZE,
                  "pixels": "RGB uint8 0..255; the model preprocesses inside its graph",
                  **(decoding.changed() if decoding is not None else {})} if variant.kind.images
        else None,
        "metadata": meta, "training_data": training_data, "weights": weights,
        "decision": None, "variant_config": variant.as_dict(),
    }


class Bundle:
    """A bundle folder loaded for scoring: the only way evaluate, predict and Grad-CAM read a model."""

    def __init__(self, folder: str | os.PathLike):
        self.dir = Path(folder)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise PipelineError(f"{self.dir} is not a model bundle (no {MANIFEST}): give models/<variant> or "
                                "bundles/<variant> of a trained and evaluated variant (skinlesion train / evaluate).")
        self.info = read_json(path)
        if self.info.get("format") != FORMAT:
            raise PipelineError(f"{path}: bundle format {self.info.get('format')} is not the {FORMAT} this "
                                f"skinlesion {__version__} reads; retrain the variant.")
        self.name = self.info["variant"]
        self.kind = kinds.get(self.info["kind"])
        self.task = tasks.get(self.info["task"])
        self.classes = self.info["classes"]

    @property
    def uses_images(self) -> bool:
        return self.kind.images

    @property
    def uses_metadata(self) -> bool:
        return self.kind.metadata

    @property
    def features(self) -> list[str] | None:
        return (self.info.get("metadata") or {}).get("features")

    @property
    def imputation_means(self) -> dict:
        return (self.info.get("metadata") or {}).get("imputation_means") or {}

    @property
    def input_size(self) -> int | None:
        return (self.info.get("input") or {}).get("image_size")

    @property
    def decoding(self) -> Decoding:
        """How images are decoded for this model (skinlesion.images.Decoding): the bundle's `input` fields,
        the defaults where absent (bundles from before the options)."""
        return Decoding.of(self.info.get("input"))

    @property
    def decision(self) -> dict | None:
        return self.info.get("decision")

    @property
    def tta(self) -> str:
        """The test-time augmentation evaluate chose (`decision.tta`); none without a decision or the field."""
        return (self.decision or {}).get("tta") or "none"

    @property
    def weights(self) -> dict:
        """{"source": where the weights came from (RANDOM said there), "imagenet": bool, None without a backbone}"""
        return self.info.get("weights") or {}

    @property
    def trained_on(self) -> str:
        return (self.info.get("training_data") or {}).get("source", "unknown")

    @cached_property
    def model(self):
        path = self.dir / self.info["model_file"]
        if not path.is_file():
            raise PipelineError(f"{path} not found: the bundle is incomplete; copy the whole folder.")
        if not self.kind.keras:
            import joblib

            return joblib.load(path)["model"]
        import keras

        from . import models  # noqa: F401  registers the custom layers for loading

        return keras.models.load_model(path, compile=False)

    def metadata_matrix(self, table: pd.DataFrame | None) -> np.ndarray | None:
        return features.matrix(table, self.features) if self.uses_metadata else None

    def predict(self, table: pd.DataFrame | None = None, images: np.ndarray | None = None,
                tta: str = "none") -> np.ndarray:
        """Probabilities: (n,) of malignant for binary, (n, n_classes) for multiclass.

        tta "flips": the mean of the probabilities of the four flips of each image (identity, horizontal,
        vertical, both; the metadata unchanged); a model without images ignores it."""
        if tta not in TTA:
            raise PipelineError(f"test-time augmentation {tta!r}: expected one of {', '.join(TTA)}")
        if tta == "flips" and self.kind.keras and self.uses_images and images is not None:
            return np.mean([self._predict(table, flipped(images, k)) for k in range(len(FLIPS))], axis=0)
        return self._predict(table, images)

    def _predict(self, table: pd.DataFrame | None, images: np.ndarray | None) -> np.ndarray:
        meta = self.metadata_matrix(table)
        if not self.kind.keras:  # scikit-learn: a column per class (training.AllClasses keeps absent ones)
            probs = np.asarray(self.model.predict_proba(meta), dtype=np.float64)
            return probs[:, 1] if self.task.binary else probs
        if self.uses_images and images is None:
            raise PipelineError(f"variant {self.name} needs images to score")
        inputs = [images, meta] if (self.uses_images and self.uses_metadata) else (images if self.uses_images
                                                                                    else meta)
        return self.task.probabilities(self.model.predict(inputs, batch_size=64, verbose=0))

    def complete(self, out: str | os.PathLike, decision: dict, extra: dict | None = None) -> Path:
        """Write the complete bundle to `out`: this model file and manifest, with `decision` filled in.
        `extra` adds (or replaces) top-level manifest blocks, e.g. recalibrate's provenance."""
        info = {**self.info, **(extra or {}), "decision": decision}
        with atomic_path(out, mark=MANIFEST) as tmp:
            tmp.mkdir(parents=True)
            shutil.copyfile(self.dir / self.info["model_file"], tmp / self.info["model_file"])
            write_json(tmp / MANIFEST, info)
        return Path(out)
