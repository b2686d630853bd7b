"""The model kinds, declared once: what each reads (images, metadata, a pretrained backbone), how it is
saved, and the defaults that differ between kinds.

Modules and the Snakemake rules (a GPU for image kinds) ask the kind instead of listing kind names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PipelineError


@dataclass(frozen=True)
class Kind:
    name: str
    images: bool  # takes the 128 px image shards
    metadata: bool  # takes the metadata features (skinlesion.features)
    backbone: bool  # built on a pretrained backbone (skinlesion.backbones)
    saved_as: str  # the model file in the bundle
    dropout: float  # default dropout: the study's MLP has it on, the other heads off
    about: str

    @property
    def keras(self) -> bool:
        return self.saved_as.endswith(".keras")


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("logreg", False, True, False, "model.npz", 0.0, "logistic regression on the metadata (scikit-learn)"),
    Kind("mlp", False, True, False, "model.keras", 0.3, "two dense ReLU layers with dropout on the metadata"),
    Kind("cnn", True, False, False, "model.keras", 0.0, "a small CNN trained from scratch on the images"),
    Kind("transfer", True, False, True, "model.keras", 0.0, "a pretrained backbone, pooled, dense ReLU, output"),
    Kind("dual", True, True, True, "model.keras", 0.0, "transfer, with the metadata concatenated after pooling"),
)}


def get(name: str) -> Kind:
    if name not in KINDS:
        raise PipelineError(f"unknown model kind '{name}'. Known: {', '.join(KINDS)}.")
    return KINDS[name]


def uses_images(name: str) -> bool:
    """For the workflow's resources: image kinds request a GPU."""
    return get(name).images
