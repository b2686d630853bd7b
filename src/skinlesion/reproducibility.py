"""Seeds and determinism in one place, so every stage and runner gives the same numbers."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, tensorflow: bool = True) -> None:
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    if tensorflow:
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(seed)
        # Deterministic kernels (same result on every run, at some speed cost on GPU).
        tf.config.experimental.enable_op_determinism()
