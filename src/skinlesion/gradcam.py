"""Grad-CAM (Selvaraju et al. 2017): where in the image the model found the evidence for its answer.

The heat map is the last convolutional feature map A (the backbone's output for transfer and dual
models, the last conv<i> layer for the small CNN), each channel weighted by the mean gradient of the
class score over it, summed, kept where positive, scaled to 0..1 and resized to the image. The
class score is P(malignant) for binary models and the predicted class's probability for multiclass
ones (or a class chosen by the caller).

Works on the models skinlesion trains (Keras 3 functional models: image -> [augmentation] ->
preprocess -> backbone sub-model or conv blocks -> pooling -> head): the forward pass is replayed
layer by layer, augmentation skipped (it is the identity at inference), with a GradientTape watching A.
"""

from __future__ import annotations

import numpy as np


def _target_index(model) -> int:
    import keras

    index = None
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Conv2D) or (
                isinstance(layer, keras.Model) and layer.name.startswith("backbone_")):
            index = i
    if index is None:
        raise ValueError(f"model {model.name} has no convolutional layer or backbone for Grad-CAM")
    return index


def _forward(model, images, meta, target: int, tape):
    """Replay the model's layers in order; return (feature map A, output)."""
    import keras

    x, feature_map = images, None
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer) or layer.name.startswith("aug_"):
            continue
        if isinstance(layer, keras.Model) and len(layer.inputs) == 2:  # the dual model's head: [features, metadata]
            x = layer([x, meta], training=False)
        else:
            x = layer(x, training=False)
        if i == target:
            feature_map = x[-1] if isinstance(x, (list, tuple)) else x  # pool_from: the backbone's output is last
            tape.watch(feature_map)
    return feature_map, x


def heatmaps(model, images: np.ndarray, meta: np.ndarray | None = None, class_index: np.ndarray | int | None = None,
             batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (n, H, W) in 0..1 at the images' size, and the model's probabilities.

    images: uint8 (n, H, W, 3) as the model takes them; meta: the dual model's metadata matrix.
    class_index: the class whose evidence to show (multiclass; default the predicted class).
    """
    import tensorflow as tf

    target = _target_index(model)
    size = images.shape[1:3]
    maps, probs = [], []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start:start + batch_size].astype(np.float32))
        m = None if meta is None else tf.convert_to_tensor(meta[start:start + batch_size].astype(np.float32))
        with tf.GradientTape() as tape:
            feature_map, out = _forward(model, x, m, target, tape)
            if out.shape[-1] == 1:
                score = out[:, 0]
            else:
                if class_index is None:
                    chosen = tf.argmax(out, axis=1)
                else:
                    chosen = np.broadcast_to(np.asarray(class_index), (len(images),))[start:start + batch_size]
                score = tf.gather(out, tf.convert_to_tensor(chosen, dtype=tf.int64), axis=1, batch_dims=1)
        grads = tape.gradient(score, feature_map)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))
        cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        maps.append(cam.numpy())
        probs.append(out.numpy())
    return np.concatenate(maps).astype(np.float32), np.concatenate(probs).astype(np.float64)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the heat map blended over it (jet colour map: red = strongest evidence)."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float64) / 255 + alpha * heat
    return np.clip(blended * 255, 0, 255).astype(np.uint8)


def sample_outcomes(y: np.ndarray, pred: np.ndarray, per_outcome: int, seed: int) -> list[tuple[str, int]]:
    """A seeded sample of rows: up to `per_outcome` each of true/false positives/negatives."""
    rng = np.random.default_rng(seed)
    picked = []
    for label, mask in (("true positive", (y == 1) & (pred == 1)), ("false negative", (y == 1) & (pred == 0)),
                        ("false positive", (y == 0) & (pred == 1)), ("true negative", (y == 0) & (pred == 0))):
        rows = np.flatnonzero(mask)
        if len(rows):
            chosen = np.sort(rng.choice(rows, min(per_outcome, len(rows)), replace=False))
            picked += [(label, int(i)) for i in chosen]
    return picked
