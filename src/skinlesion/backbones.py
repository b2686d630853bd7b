"""The pretrained backbones, declared once: the keras.applications builder, its ImageNet preprocessing,
the weights file Keras caches, and where its top blocks start (for fine-tuning the top only).

Adding a backbone from keras.applications is one entry here plus its name in the params schema's enum
(`backbone` and `train.weights`); tests/test_models.py builds every entry from random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
