"""Model builders: each variant's network is a short function of its hyper-parameters.

Image models take uint8-range RGB (the shards, unchanged) and do their own preprocessing and
augmentation inside the graph, so training, evaluation and `predict` cannot drift apart.
"""

from __future__ import annotations

import keras
from keras import layers

from . import backbones
from .tasks import Task
from .variant import Augment, Variant


@keras.saving.register_keras_serializable(package="skinlesion")
class CaffePreprocess(layers.Layer):
    """ResNet50's ImageNet preprocessing (RGB->BGR, minus the ImageNet channel means) as a layer."""

    def call(self, x):
        mean = keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)
        return keras.ops.flip(x, axis=-1) - mean


@keras.saving.register_keras_serializable(package="skinlesion")
class ClipPixels(layers.Layer):
    """Clip to the 0..255 pixel range: Keras 3.15's RandomSaturation does not clip the saturation it scales
    up, so its output leaves the range (values down to -90 measured on uint8-range input)."""

    def call(self, x):
        return keras.ops.clip(x, 0.0, 255.0)


def preprocessing(backbone: str) -> layers.Layer:
    """The backbone's ImageNet preprocessing (skinlesion.backbones), as the layer named "preprocess"."""
    style = backbones.get(backbone).preprocessing
    if style == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    if style == "caffe":
        return CaffePreprocess(name="preprocess")
    return layers.Identity(name="preprocess")  # "builtin": the network rescales its 0..255 input itself


def augmentation(augment: Augment | None, seed: int) -> list[layers.Layer]:
    """The study's augmentation (flip, rotation, zoom), then colour jitter (brightness, contrast, saturation,
    hue) on the 0..255 pixels, before the backbone's preprocessing; the layers are identity at inference."""
    if augment is None:
        return []
    out = []
    if augment.flip:
        out.append(layers.RandomFlip("horizontal_and_vertical", seed=seed, name="aug_flip"))
    if augment.rotation:
        out.append(layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed + 1, name="aug_rotation"))
    if augment.zoom:
        out.append(layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed + 2, name="aug_zoom"))
    value_range = (0, 255)  # the images enter as uint8-range RGB
    if augment.brightness:
        out.append(layers.RandomBrightness(augment.brightness, value_range=value_range, seed=seed + 3,
                                           name="aug_brightness"))
    if augment.contrast:
        out.append(layers.RandomContrast(augment.contrast, value_range=value_range, seed=seed + 4, name="aug_contrast"))
    if augment.saturation:
        s = augment.saturation / 2  # Keras' factor 0.5 is no change: a range around it
        out.append(layers.RandomSaturation((0.5 - s, 0.5 + s), value_range=value_range, seed=seed + 5,
                                           name="aug_saturation"))
        out.append(ClipPixels(name="aug_saturation_clip"))
    if augment.hue:
        out.append(layers.RandomHue(augment.hue, value_range=value_range, seed=seed + 6, name="aug_hue"))
    return out


def output_layer(task: Task) -> layers.Layer:
    # Under a mixed-precision policy (train.mixed_precision) the probabilities stay float32: a float16
    # sigmoid / softmax and its loss lose precision. Under float32 nothing is passed (same saved config).
    extra = {"dtype": "float32"} if keras.mixed_precision.global_policy().name != "float32" else {}
    return layers.Dense(task.n_outputs, activation=task.activation, name="output", **extra)


def backbone(name: str, size: int, weights: str | None, pool_from: tuple[str, ...] = ()) -> keras.Model:
    """The ImageNet backbone, named backbone_<name>. With `pool_from`, a model of the same name and layers
    whose outputs are those layers' activations and, last, the backbone's own output (Grad-CAM's map)."""
    base = backbones.get(name).build(size, weights)
    if pool_from:
        backbones.check_pool_from(name, backbones.layer_table(base), pool_from)  # as `skinlesion validate` does
        base = keras.Model(base.input, [base.get_layer(t).output for t in pool_from] + [base.output])
    base.name = f"backbone_{name}"
    return base


def feature_width(base: keras.Model) -> int:
    """Channels of the pooled features: the backbone's output, plus every pool_from layer's."""
    shapes = base.output_shape if isinstance(base.output_shape, list) else [base.output_shape]
    return sum(int(shape[-1]) for shape in shapes)


@keras.saving.register_keras_serializable(package="skinlesion")
class MultiPool(layers.Layer):
    """Global average pooling of each of several feature maps, concatenated (one layer, so the model stays
    a chain: Grad-CAM replays it layer by layer)."""

    def call(self, maps):
        return keras.ops.concatenate([keras.ops.mean(m, axis=(1, 2)) for m in maps], axis=-1)


def pool(base: keras.Model) -> layers.Layer:
    """The pooling after `base`: plain GAP, or MultiPool when it has several outputs (pool_from)."""
    return MultiPool(name="pool") if isinstance(base.output, list) else layers.GlobalAveragePooling2D(name="pool")


def head(in_dim: int, v: Variant, extra_dim: int = 0,
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
    x = layers.Dense(v.dense_units, activation="relu", name="dense")(x)
    if v.dropout:
        x = layers.Dropout(v.dropout, name="dropout")(x)
    return keras.Model(inputs, output_layer(v.task)(x), name="head")


def transfer(v: Variant, size: int, base: keras.Model, head_model: keras.Model, n_meta: int = 0,
             seed: int = 0) -> keras.Model:
    """image -> [augment] -> preprocess -> backbone (inference-mode BN) -> GAP -> head."""
    image = keras.Input((size, size, 3), name="image")
    x = image
    for layer in augmentation(v.augment, seed):
        x = layer(x)
    x = preprocessing(v.backbone.name)(x)
    # Inference-mode BatchNorm. Keras 3 lets fit()'s training=True override this training=False for the
    # layers inside (keras-team/keras#20285): set_trainable_from keeps BatchNorm frozen for that reason.
    x = base(x, training=False)
    x = pool(base)(x)
    inputs = [image]
    if n_meta:
        meta = keras.Input((n_meta,), name="metadata")
        inputs.append(meta)
        out = head_model([x, meta])
    else:
        out = head_model(x)
    return keras.Model(inputs, out, name=v.name)


def pooled_features(base: keras.Model, backbone_name: str, size: int) -> keras.Model:
    """image -> pooled backbone features: what a frozen, non-augmented backbone computes once."""
    image = keras.Input((size, size, 3), name="image")
    x = preprocessing(backbone_name)(image)
    x = base(x, training=False)
    return keras.Model(image, pool(base)(x), name="features")


def unfreeze_index(base: keras.Model, unfreeze_from: int | str | None) -> int:
    """Index into base.layers of the first layer to unfreeze: an index (negative counts from the
    top), a layer name, or "top" (the backbone's top blocks, skinlesion.backbones); None or 0
    unfreezes the whole backbone. PipelineError (skinlesion.backbones.unfreeze_start) for any other value."""
    name = base.name.removeprefix("backbone_")
    return backbones.unfreeze_start(name, backbones.layer_table(base), unfreeze_from)  # as `validate` does


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


def cnn(v: Variant, size: int, seed: int = 0) -> keras.Model:
    """The study's small CNN: conv + max-pool blocks, flatten, dense ReLU, output (trained from scratch)."""
    image = keras.Input((size, size, 3), name="image")
    x = image
    for layer in augmentation(v.augment, seed):
        x = layer(x)
    x = layers.Rescaling(1.0 / 255, name="preprocess")(x)
    for i, filters in enumerate(v.filters):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(v.dense_units, activation="relu", name="dense")(x)
    if v.dropout:
        x = layers.Dropout(v.dropout, name="dropout")(x)
    return keras.Model(image, output_layer(v.task)(x), name=v.name)


def mlp(v: Variant, n_features: int, normalizer: layers.Normalization) -> keras.Model:
    """The study's metadata MLP: dense ReLU layers, each with dropout (normalisation fitted on train)."""
    meta = keras.Input((n_features,), name="metadata")
    x = normalizer(meta)
    for i, units in enumerate(v.hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = layers.Dropout(v.dropout, name=f"dropout{i}")(x)
    return keras.Model(meta, output_layer(v.task)(x), name=v.name)
