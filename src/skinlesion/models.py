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


def has_augmentation(cfg: dict | None) -> bool:
    """Whether a variant's `augment` settings add any random layer (flip defaults to on)."""
    return bool(cfg) and bool(cfg.get("flip", True) or cfg.get("rotation", 0) or cfg.get("zoom", 0))


def flips_only(cfg: dict | None) -> bool:
    """Whether the augmentation is RandomFlip alone (four possible outcomes per image)."""
    return has_augmentation(cfg) and bool(cfg.get("flip", True)) and not cfg.get("rotation", 0) \
        and not cfg.get("zoom", 0)


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
    # Under a mixed-precision policy (train.mixed_precision) the probabilities stay float32: a float16
    # sigmoid / softmax and its loss lose precision. Under float32 nothing is passed (same saved config).
    extra = {"dtype": "float32"} if keras.mixed_precision.global_policy().name != "float32" else {}
    if task == "binary":
        return layers.Dense(1, activation="sigmoid", name="output", **extra)
    return layers.Dense(n_classes, activation="softmax", name="output", **extra)


def backbone(name: str, size: int, weights: str | None) -> keras.Model:
    base = BACKBONES[name](input_shape=(size, size, 3), include_top=False, weights=weights)
    base.name = f"backbone_{name}"
    return base


def head(in_dim: int, cfg: dict, n_classes: int, extra_dim: int = 0,
         meta_norm: layers.Normalization | None = None) -> keras.Model:
    """Dense ReLU (+dropout) and the output: applied to pooled image features (and metadata).

    With metadata (the dual-input model) the metadata pass through `meta_norm` (a Normalization
    fitted on train) before they are concatenated with the image features, so age in years and
    0/1 indicators enter on one scale.
    """
    features = keras.Input((in_dim,), name="features")
    inputs = [features]
    x = features
    if extra_dim:
        meta = keras.Input((extra_dim,), name="metadata")
        inputs.append(meta)
        m = meta_norm(meta) if meta_norm is not None else meta
        x = layers.Concatenate(name="concat")([x, m])
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
    # Inference-mode BatchNorm. Keras 3 lets fit()'s training=True override this training=False for the
    # layers inside (keras-team/keras#20285): set_trainable_from keeps BatchNorm frozen for that reason.
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


def unfreeze_index(base: keras.Model, unfreeze_from: int | str | None) -> int:
    """Index into base.layers of the first layer to unfreeze: an index (negative counts from the
    top) or a layer name; None or 0 unfreezes the whole backbone."""
    if unfreeze_from is None:
        return 0
    if isinstance(unfreeze_from, str):
        names = [layer.name for layer in base.layers]
        if unfreeze_from not in names:
            raise ValueError(f"fine_tune.unfreeze_from: {base.name} has no layer named '{unfreeze_from}'")
        return names.index(unfreeze_from)
    n = len(base.layers)
    if not -n <= unfreeze_from < n:
        raise ValueError(f"fine_tune.unfreeze_from: {unfreeze_from} is outside {base.name}'s {n} layers")
    return unfreeze_from % n


def set_trainable_from(base: keras.Model, start: int) -> list[str]:
    """Freeze base.layers[:start], unfreeze the rest except BatchNormalization; the names of the
    layers whose weights now train.

    BatchNormalization stays frozen: in Keras 3 the `training=True` of fit() reaches every layer of a
    nested model even when the model was called with training=False (keras-team/keras#20285), and only
    a non-trainable BatchNormalization keeps using its ImageNet moving statistics. Unfrozen, it would
    normalise with the statistics of each small batch (and overwrite the moving ones).
    """
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
    return [layer.name for layer in base.layers[start:] if layer.trainable and layer.weights]


def split_backbone(base: keras.Model, start: int) -> tuple[keras.Model, keras.Model] | None:
    """(bottom, top) sub-models sharing base's layers, cut at the input of base.layers[start]:
    bottom = base up to the cut, top = the cut to base's output. None when the cut is not clean
    (the layer has several inputs, or a skip connection jumps over the cut)."""
    if start <= 0:
        return None
    cut = base.layers[start].input
    if isinstance(cut, (list, tuple)):
        return None
    try:
        top = keras.Model(cut, base.output, name=f"{base.name}_top")
    except ValueError:  # "not connected to inputs": a residual path bypasses the cut
        return None
    bottom = keras.Model(base.input, cut, name=f"{base.name}_bottom")
    return bottom, top


def bottom_features(bottom: keras.Model, backbone_name: str, size: int) -> keras.Model:
    """image -> preprocess -> the frozen bottom of the backbone: computed once while the top is tuned."""
    image = keras.Input((size, size, 3), name="image")
    x = preprocessing(backbone_name)(image)
    return keras.Model(image, bottom(x, training=False), name="bottom_features")


def pooled_top(top: keras.Model) -> keras.Model:
    """cached bottom activations -> top of the backbone -> GAP: the pooled features, from activations."""
    cut = keras.Input(top.input_shape[1:], name="activations")
    return keras.Model(cut, layers.GlobalAveragePooling2D(name="pool")(top(cut, training=False)),
                       name="features")


def top_model(top: keras.Model, head_model: keras.Model, n_meta: int = 0) -> keras.Model:
    """cached bottom activations [+ metadata] -> trainable top of the backbone -> GAP -> head.

    Shares its layers with the full model, so what it learns is what the saved model predicts with."""
    cut = keras.Input(top.input_shape[1:], name="activations")
    x = top(cut, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if n_meta:
        meta = keras.Input((n_meta,), name="metadata")
        return keras.Model([cut, meta], head_model([x, meta]), name="top_and_head")
    return keras.Model(cut, head_model(x), name="top_and_head")


def cnn(cfg: dict, size: int, n_classes: int, seed: int = 0) -> keras.Model:
    """The study's small CNN: conv + max-pool blocks, flatten, dense ReLU, output (trained from scratch)."""
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
