"""A variant as the stages use it: typed, every default filled in, from one place.

params.yaml names a variant by a few keys (`variants:`); what it leaves out comes from the `train:`
section (learning_rate, batch_size, epochs, patience) and else from the `default:` of each key in the
params schema (src/skinlesion/schemas/params.schema.yaml), the single declaration of the defaults. The
one default that depends on the kind, dropout, comes from skinlesion.kinds. Model builders, training
and the runners read a Variant, never the raw mapping.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache

from . import backbones, kinds, tasks
from .errors import PipelineError

# Hyper-parameters a variant inherits from `train:` unless it sets its own.
INHERITED = ("learning_rate", "batch_size", "epochs", "patience")


@lru_cache(maxsize=1)
def schema_defaults() -> dict:
    """{key: default} of a variant (nested mappings as dicts), and of the `train:` hyper-parameters."""
    from .params import schema

    s = schema()["$defs"]

    def defaults(node: dict) -> dict:
        out = {}
        for key, sub in node.get("properties", {}).items():
            if "default" in sub:
                out[key] = sub["default"]
            elif "properties" in sub:
                out[key] = defaults(sub)
        return out

    return {**defaults(s["hyper"]), **defaults(s["variant"])}


COLOUR_AUGMENT = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class Augment:
    """The study's augmentation (flip, rotation, zoom) and colour jitter (brightness, contrast, saturation,
    hue: acquisition differences between cameras and clinics); `any` is whether it adds a random layer at all."""

    flip: bool
    rotation: float
    zoom: float
    brightness: float = 0
    contrast: float = 0
    saturation: float = 0
    hue: float = 0

    @property
    def colour(self) -> bool:
        return any(getattr(self, k) for k in COLOUR_AUGMENT)

    @property
    def any(self) -> bool:
        return bool(self.flip or self.rotation or self.zoom or self.colour)

    @property
    def flips_only(self) -> bool:
        """RandomFlip alone: four possible outcomes per image, so a frozen part can run once per flip."""
        return bool(self.flip) and not self.rotation and not self.zoom and not self.colour

    def record(self) -> dict:
        """As train.json and the bundle record it: the colour keys only when used (so a variant without them
        records the same bytes as before they existed)."""
        return {k: v for k, v in vars(self).items() if k not in COLOUR_AUGMENT or v}


@dataclass(frozen=True)
class FineTune:
    warmup_epochs: int  # frozen-backbone epochs before the backbone is unfrozen
    learning_rate: float
    epochs: int
    unfreeze_from: int | str | None  # None: the whole backbone; "top": the backbone's top blocks


@dataclass(frozen=True)
class Sampling:
    strategy: str
    per_class: int | None
    total: int | None


@dataclass(frozen=True)
class Variant:
    name: str
    kind: kinds.Kind
    task: tasks.Task
    backbone: backbones.Backbone | None
    freeze: bool
    fine_tune: FineTune | None  # None: the backbone stays frozen (or there is none)
    augment: Augment | None  # None: no augmentation was asked for
    sampling: Sampling
    features: tuple[str, ...]
    dense_units: int
    hidden_units: tuple[int, ...]
    filters: tuple[int, ...]
    dropout: float
    C: float
    learning_rate: float
    batch_size: int
    epochs: int
    patience: int
    pool_from: tuple[str, ...] = ()  # backbone layers pooled beside its output (features from several depths)
    given: dict = field(default_factory=dict, compare=False, repr=False)  # the params entry as written

    @property
    def augmented(self) -> bool:
        return self.augment is not None and self.augment.any

    @property
    def flips_only(self) -> bool:
        return self.augmented and self.augment.flips_only

    @property
    def warmup_epochs(self) -> int:
        """Epochs of the first (frozen-backbone) phase."""
        return self.fine_tune.warmup_epochs if self.fine_tune else self.epochs

    def as_dict(self) -> dict:
        """What train.json and the bundle record: the variant as written, and every value it trained with."""
        return {"name": self.name, "given": self.given, "kind": self.kind.name, "task": self.task.name,
                "backbone": self.backbone.name if self.backbone else None, "freeze": self.freeze,
                "fine_tune": vars(self.fine_tune) if self.fine_tune else None,
                "augment": self.augment.record() if self.augment else None, "sampling": vars(self.sampling),
                "features": list(self.features), "dense_units": self.dense_units,
                "hidden_units": list(self.hidden_units), "filters": list(self.filters), "dropout": self.dropout,
                "C": self.C, "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "epochs": self.epochs, "patience": self.patience,
                **({"pool_from": list(self.pool_from)} if self.pool_from else {})}  # absent: records as before


def of(entry: dict, name: str | None = None, train: dict | None = None) -> Variant:
    """A Variant from its params entry, `train:` hyper-parameters, then the schema's defaults."""
    entry = copy.deepcopy(entry)
    name = name or entry.get("name") or "variant"
    d = schema_defaults()
    inherited = {k: (train or {}).get(k, d[k]) for k in INHERITED}

    def get(key: str):
        return entry[key] if key in entry else inherited[key] if key in inherited else d.get(key)

    kind, task = kinds.get(entry.get("kind")), tasks.get(entry.get("task"))
    backbone = None
    if kind.backbone:
        if not entry.get("backbone"):
            raise PipelineError(f"variant {name}: kind {kind.name} needs a backbone "
                                f"({', '.join(backbones.BACKBONES)}).")
        backbone = backbones.get(entry["backbone"])
    freeze = get("freeze")
    fine_tune = None
    if kind.backbone and not freeze:
        ft = entry.get("fine_tune") or {}
        fine_tune = FineTune(warmup_epochs=ft.get("warmup_epochs", get("epochs")),
                             learning_rate=ft.get("learning_rate", get("learning_rate") / 10),
                             epochs=ft.get("epochs", get("epochs")), unfreeze_from=ft.get("unfreeze_from"))
    augment = None
    if entry.get("augment"):  # absent or {}: none
        augment = Augment(**{**d["augment"], **entry["augment"]})
    sampling = Sampling(**{**d["sampling"], **(entry.get("sampling") or {})})
    pool_from = tuple(entry.get("pool_from") or ())
    if pool_from and (backbone is None or fine_tune is not None):
        raise PipelineError(f"variant {name}: pool_from needs a frozen backbone (kind transfer or dual, freeze: "
                            "true); fine-tuning pools the backbone's output only.")
    return Variant(
        name=name, kind=kind, task=task, backbone=backbone, freeze=freeze, fine_tune=fine_tune, augment=augment,
        sampling=sampling, features=tuple(get("features")), dense_units=get("dense_units"),
        hidden_units=tuple(get("hidden_units")), filters=tuple(get("filters")),
        dropout=entry.get("dropout", kind.dropout), C=get("C"), learning_rate=get("learning_rate"),
        batch_size=get("batch_size"), epochs=get("epochs"), patience=get("patience"), pool_from=pool_from,
        given={k: v for k, v in entry.items() if k != "name"})


def from_params(params: dict, name: str) -> Variant:
    variants = params["variants"]
    if name not in variants:
        raise PipelineError(f"unknown variant '{name}'. Variants in params: {', '.join(sorted(variants))}.")
    return of(variants[name], name, params.get("train"))


def check_buildable(v: Variant, size: int) -> None:
    """What the schema cannot say and the model builders would only find at train time, checked without
    training: the backbone layers a variant names (fine_tune.unfreeze_from, pool_from), against the
    backbone's architecture built at the images' size with random weights (no weights read or downloaded),
    and a small CNN's depth (each block halves the image). PipelineError naming the variant, the key, the
    value and some valid choices; `skinlesion validate` runs it on every variant."""
    if v.kind.images and not v.kind.backbone and size >> len(v.filters) < 1:  # the small CNN (models.cnn)
        deepest = size.bit_length() - 1  # blocks that keep at least one pixel
        raise PipelineError(f"variant {v.name}: filters: {len(v.filters)} conv blocks each halve the image, and "
                            f"images.size {size} allows at most {deepest}; give at most {deepest} filters")
    if v.backbone is None:
        return
    unfreeze_from = v.fine_tune.unfreeze_from if v.fine_tune else None
    if unfreeze_from is None and not v.pool_from:
        return  # nothing named: no need to build anything
    table = backbones.layers(v.backbone.name, size)
    try:
        if v.fine_tune:
            backbones.unfreeze_start(v.backbone.name, table, unfreeze_from)
        backbones.check_pool_from(v.backbone.name, table, v.pool_from)
    except PipelineError as exc:
        raise PipelineError(f"variant {v.name}: {exc}") from None
