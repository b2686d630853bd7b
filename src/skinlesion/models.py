"""Model builders: each variant's network is a short function of its hyper-parameters.

Image models take uint8-range RGB (the shards, unchanged) and do their own preprocessing and
augmentation inside the graph, so training, evaluation and `predict` cannot drift apart.
"""

from __future__ import annotations

import keras
from keras import layers

BACKBONES = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}


@keras.saving.register_keras_serializable(package="skinlesion")
class CaffePreprocess(layers.Layer):
    """ResNet50's ImageNet preprocessing (RGB->BGR, minus the ImageNet channel means) as a layer."""

    def call(self, x):
        mean = keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)
        return keras.ops.flip(x, axis=-1) - mean


def preprocessing(backbone: str) -> layers.Layer:
    if backbone == "mobilenet_v2":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    return CaffePreprocess(name="preprocess")


def augmentation(cfg: dict | None, seed: int) -> list[layers.Layer]:
    """The study's augmentation (flip, rotation, zoom); the layers are identity at inference."""
    if not cfg:
        return []
    out = []
    if cfg.get("flip", True):
        out.append(layers.RandomFlip("horizontal_and_vertical", seed=seed, name="aug_flip"))
    if cfg.get("rotation", 0):
        out.append(layers.RandomRotation(cfg["rotation"], fill_mode="reflect", seed=seed + 1, name="aug_rotation"))
    if cfg.get("zoom", 0):
        out.append(layers.RandomZoom(cfg["zoom"], fill_mode="reflect", seed=seed + 2, name="aug_zoom"))
    return out


def n_outputs(task: str, n_classes: int) -> int:
    return 1 if task == "binary" else n_classes


def output_layer(task: str, n_classes: int) -> layers.Layer:
    if task == "binary":
        return layers.Dense(1, activation="sigmoid", name="output")
    return layers.Dense(n_classes, activation="softmax", name="output")


def backbone(name: str, size: int, weights: str | None) -> keras.Model:
    base = BACKBONES[name](input_shape=(size, size, 3), include_top=False, weights=weights)
    base.name = f"backbone_{name}"
    return base


def head(in_dim: int, cfg: dict, n_classes: int, extra_dim: int = 0) -> keras.Model:
    """Dense ReLU (+dropout) and the output: applied to pooled image features (and metadata)."""
    features = keras.Input((in_dim,), name="features")
    inputs = [features]
    x = features
    if extra_dim:
        meta = keras.Input((extra_dim,), name="metadata")
        inputs.append(meta)
        x = layers.Concatenate(name="concat")([x, meta])
    x = layers.Dense(cfg.get("dense_units", 128), activation="relu", name="dense")(x)
    if cfg.get("dropout", 0):
        x = layers.Dropout(cfg["dropout"], name="dropout")(x)
    return keras.Model(inputs, output_layer(cfg["task"], n_classes)(x), name="head")


def transfer(cfg: dict, size: int, n_classes: int, base: keras.Model, head_model: keras.Model,
             n_meta: int = 0, seed: int = 0) -> keras.Model:
    """image -> [augment] -> preprocess -> backbone (inference-mode BN) -> GAP -> head."""
    image = keras.Input((size, size, 3), name="image")
    x = image
    for layer in augmentation(cfg.get("augment"), seed):
        x = layer(x)
    x = preprocessing(cfg["backbone"])(x)
    # training=False keeps BatchNorm statistics fixed, also while the backbone is fine-tuned.
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    inputs = [image]
    if n_meta:
        meta = keras.Input((n_meta,), name="metadata")
        inputs.append(meta)
        out = head_model([x, meta])
    else:
        out = head_model(x)
    return keras.Model(inputs, out, name=cfg["name"])


def pooled_features(base: keras.Model, backbone_name: str, size: int) -> keras.Model:
    """image -> pooled backbone features: what a frozen, non-augmented backbone computes once."""
    image = keras.Input((size, size, 3), name="image")
    x = preprocessing(backbone_name)(image)
    x = base(x, training=False)
    return keras.Model(image, layers.GlobalAveragePooling2D(name="pool")(x), name="features")


def cnn(cfg: dict, size: int, n_classes: int, seed: int = 0) -> keras.Model:
    """The study's small CNN: conv + max-pool blocks, flatten, dense ReLU, output."""
    image = keras.Input((size, size, 3), name="image")
    x = image
    for layer in augmentation(cfg.get("augment"), seed):
        x = layer(x)
    x = layers.Rescaling(1.0 / 255, name="preprocess")(x)
    for i, filters in enumerate(cfg.get("filters", [32, 64, 128])):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(cfg.get("dense_units", 128), activation="relu", name="dense")(x)
    if cfg.get("dropout", 0):
        x = layers.Dropout(cfg["dropout"], name="dropout")(x)
    return keras.Model(image, output_layer(cfg["task"], n_classes)(x), name=cfg["name"])


def mlp(cfg: dict, n_features: int, n_classes: int, normalizer: layers.Normalization) -> keras.Model:
    """The study's metadata MLP: two dense ReLU layers with dropout (normalisation fitted on train)."""
    meta = keras.Input((n_features,), name="metadata")
    x = normalizer(meta)
    for i, units in enumerate(cfg.get("hidden_units", [64, 32])):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = layers.Dropout(cfg.get("dropout", 0.3), name=f"dropout{i}")(x)
    return keras.Model(meta, output_layer(cfg["task"], n_classes)(x), name=cfg["name"])
