"""Where ImageNet weights come from: an explicit file, the Keras cache, or a download.

When none works, a synthetic run may continue from random weights (and every output says so);
a run on real data stops with an error that names the file and the ways to supply it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from . import backbones
from .errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Weights:
    keras_arg: str | None  # what keras.applications takes: a file path, "imagenet" or None (random)
    source: str  # for people: where they came from

    @property
    def imagenet(self) -> bool:
        return self.keras_arg is not None


def keras_cache_file(backbone: str, size: int) -> str:
    return backbones.get(backbone).cache_file(size)


def _cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _download(backbone: str, size: int, timeout: float = 20.0) -> bool:
    """Let Keras fetch the official file into its cache; False (quickly) when offline."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        backbones.get(backbone).build(size, "imagenet")
        return True
    except Exception as exc:  # no network, DNS failure, HTTP error: all mean "not available"
        log.info("weights: download of %s ImageNet weights failed: %s", backbone, exc)
        return False
    finally:
        socket.setdefaulttimeout(old)


def resolve(backbone: str, explicit: str | None, size: int, allow_random: bool) -> Weights:
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return Weights(str(path.resolve()), f"ImageNet weights from {explicit}")
    cached = _cache_dir() / keras_cache_file(backbone, size)
    if explicit:
        if not cached.is_file():  # a set path that does not exist is a mistake: say so, download nothing
            raise PipelineError(
                f"train.weights.{backbone} is {explicit}, which does not exist (resolved to "
                f"{Path(explicit).expanduser().resolve()}). Fix the path, or set it to null to use the Keras cache "
                "or a download."
            )
        log.warning("weights: train.weights.%s = %s does not exist; using the Keras cache", backbone, explicit)
    if cached.is_file():
        return Weights("imagenet", f"ImageNet weights from the Keras cache ({cached})")
    if os.environ.get("SKINLESION_OFFLINE") != "1" and _download(backbone, size):
        return Weights("imagenet", "ImageNet weights downloaded by Keras")
    if allow_random:
        log.warning("weights: no ImageNet weights for %s; training from RANDOM weights (synthetic data only)", backbone)
        return Weights(None, f"RANDOM weights: no ImageNet weights for {backbone} were found")
    raise PipelineError(
        f"no ImageNet weights for {backbone}. Supply them one of three ways: set train.weights.{backbone} "
        f"in params.yaml to a weights file (.h5, include_top=False); put {keras_cache_file(backbone, size)} "
        f"in {_cache_dir()}; or run once with internet access so Keras downloads it."
    )
