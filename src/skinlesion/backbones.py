"""The pretrained backbones, declared once: the keras.applications builder, its ImageNet preprocessing,
the weights file Keras caches, and where its top blocks start (for fine-tuning the top only).

Adding a backbone from keras.applications is one entry here plus its name in the params schema's enum
(`backbone` and `train.weights`); tests/test_models.py builds every entry from random weights.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from .errors import PipelineError

MOBILENET_SIZES = (96, 128, 160, 192, 224)  # the input sizes Keras publishes MobileNetV2 weights for


def _mobilenet_v2_file(size: int) -> str:
    s = min(MOBILENET_SIZES, key=lambda x: abs(x - size))
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{s}_no_top.h5"


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str  # the keras.applications function
    # "tf": scale 0..255 to -1..1; "caffe": RGB->BGR minus the ImageNet means; "builtin": the network
    # rescales its 0..255 input itself (EfficientNet)
    preprocessing: str
    cache_file: Callable[[int], str]  # the no-top weights file Keras downloads into ~/.keras/models, by input size
    top_blocks_from: str  # first layer of the last blocks: `fine_tune.unfreeze_from: top` starts there

    def build(self, size: int, weights: str | None):
        """The no-top network for size x size RGB input; weights: a file, "imagenet" or None (random)."""
        import keras

        return getattr(keras.applications, self.application)(input_shape=(size, size, 3), include_top=False,
                                                             weights=weights)


BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("mobilenet_v2", "MobileNetV2", "tf", _mobilenet_v2_file, "block_13_expand"),
    Backbone("resnet50", "ResNet50", "caffe", lambda size: "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
             "conv5_block1_1_conv"),
    Backbone("efficientnet_b0", "EfficientNetB0", "builtin", lambda size: "efficientnetb0_notop.h5",
             "block6a_expand_conv"),
)}


def get(name: str | None) -> Backbone:
    if name not in BACKBONES:
        raise PipelineError(f"unknown backbone '{name}'. Known: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


# ----------------------------------------------------------------------------------------------------
# Layer names, for the params that name a backbone layer (fine_tune.unfreeze_from, pool_from): one check,
# run by `skinlesion validate` on the architecture alone and by the model builders on the real network.


@dataclass(frozen=True)
class LayerInfo:
    name: str
    feature_map: bool  # its output is (batch, height, width, channels): it can be average-pooled
    output: bool  # it gives the backbone's own output


def layer_table(base) -> tuple[LayerInfo, ...]:
    """The layers of a built backbone (a keras.Model), in order."""
    def rank(layer):
        shape = getattr(layer.output, "shape", None)
        return len(shape) if shape is not None else None

    return tuple(LayerInfo(layer.name, rank(layer) == 4, layer.output is base.output) for layer in base.layers)


@lru_cache(maxsize=None)
def layers(name: str, size: int) -> tuple[LayerInfo, ...]:
    """The layers of backbone `name` at size x size input, from its architecture alone: built with random
    weights (weights=None: nothing read or downloaded, well under a second), after clearing Keras' session so
    that automatically named layers get the names a fresh training process gives them."""
    import keras

    keras.utils.clear_session()
    return layer_table(get(name).build(size, None))


def _some(names: Sequence[str], near: str, also: Sequence[str] = ()) -> str:
    """A few valid choices to show beside a bad name: the closest ones, else some spread over the network."""
    close = difflib.get_close_matches(str(near), names, n=3, cutoff=0.8)
    if not close:
        step = max(1, len(names) // 4)
        close = [n for n in list(also) + list(names[step::step])[:3] if n in names]
    return ", ".join(dict.fromkeys(close))


def unfreeze_start(name: str, table: Sequence[LayerInfo], unfreeze_from: int | str | None) -> int:
    """Index into the backbone's layers of the first to unfreeze for `fine_tune.unfreeze_from`: an index
    (negative counts from the top), a layer name, or "top" (top_blocks_from); None or 0: the whole
    backbone. PipelineError naming the key, the value and some valid choices otherwise."""
    if unfreeze_from is None:
        return 0
    names = [layer.name for layer in table]
    n = len(names)
    top = BACKBONES[name].top_blocks_from if name in BACKBONES else names[-1]
    if unfreeze_from == "top":
        unfreeze_from = get(name).top_blocks_from
        if unfreeze_from not in names:  # the registry is wrong, not the params
            raise PipelineError(f"backbone {name}: its top blocks start at {unfreeze_from!r}, which is not one of "
                                "its layers (skinlesion.backbones)")
    if isinstance(unfreeze_from, str):
        if unfreeze_from not in names:
            raise PipelineError(
                f"fine_tune.unfreeze_from: {name} has no layer named {unfreeze_from!r}; give one of its {n} "
                f"layer names (e.g. {_some(names, unfreeze_from, [top])}), an index in "
                f"{-n}..{n - 1}, or top")
        return names.index(unfreeze_from)
    if not -n <= unfreeze_from < n:
        raise PipelineError(f"fine_tune.unfreeze_from: {unfreeze_from} is outside {name}'s {n} layers; give an "
                            f"index in {-n}..{n - 1}, a layer name (e.g. {top}) or top")
    return unfreeze_from % n


def check_pool_from(name: str, table: Sequence[LayerInfo], pool_from: Sequence[str]) -> None:
    """PipelineError unless every pool_from layer is a layer of the backbone with a feature-map output other
    than the backbone's own output (which is always pooled)."""
    by_name = {layer.name: layer for layer in table}
    poolable = [layer.name for layer in table if layer.feature_map and not layer.output]
    for tap in pool_from:
        layer = by_name.get(tap)
        if layer is None:
            raise PipelineError(f"pool_from: {name} has no layer named {tap!r}; name layers with a (height, width, "
                                f"channels) output, e.g. {_some(poolable, tap)}")
        if layer.output:
            raise PipelineError(f"pool_from: {tap!r} is {name}'s own output, which is always pooled")
        if not layer.feature_map:
            raise PipelineError(f"pool_from: {name}'s layer {tap!r} gives no feature map; name a layer with a "
                                f"(height, width, channels) output, e.g. {_some(poolable, tap)}")
