"""A trained variant loaded back for scoring: the one code path evaluate and predict share."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import features
from .errors import PipelineError
from .io import read_json


class Trained:
    def __init__(self, model_dir: str | os.PathLike):
        self.dir = Path(model_dir)
        info_path = self.dir / "train.json"
        if not info_path.exists():
            raise PipelineError(f"{self.dir} is not a trained variant (no train.json); run skinlesion train first.")
        self.info = read_json(info_path)
        self.kind = self.info["kind"]
        self.task = self.info["config"]["task"]
        self.classes = self.info["classes"]

    @property
    def uses_images(self) -> bool:
        return self.kind in ("cnn", "transfer", "dual")

    @property
    def uses_metadata(self) -> bool:
        return self.kind in ("logreg", "mlp", "dual")

    @cached_property
    def model(self):
        if self.kind == "logreg":
            import joblib

            return joblib.load(self.dir / "model.joblib")["model"]
        import keras

        from . import models  # noqa: F401  registers the custom layers for loading

        return keras.models.load_model(self.dir / "model.keras", compile=False)

    def predict(self, table: pd.DataFrame | None = None, images: np.ndarray | None = None) -> np.ndarray:
        """Probabilities: (n,) of malignant for binary, (n, n_classes) for multiclass."""
        meta = features.matrix(table, self.info["features"]) if self.uses_metadata else None
        if self.kind == "logreg":
            probs = self.model.predict_proba(meta)
            # scikit-learn has a column only per class seen in training: put each where it belongs,
            # so a class absent from train scores 0 rather than shifting the others.
            full = np.zeros((len(probs), len(self.classes)))
            full[:, self.model.classes_.astype(int)] = probs
            return full[:, 1] if self.task == "binary" else full
        if self.uses_images and images is None:
            raise PipelineError(f"variant {self.info['variant']} needs images to score")
        inputs = [images, meta] if self.kind == "dual" else (images if self.uses_images else meta)
        probs = np.asarray(self.model.predict(inputs, batch_size=64, verbose=0), dtype=np.float64)
        return probs[:, 0] if self.task == "binary" else probs
