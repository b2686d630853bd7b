"""Every enumeration of params.schema.yaml has exactly the entries of the registry that implements it.

The schema is what a user reads (and what validates params.yaml); the registries are what the code does.
A kind, backbone, task, source, layout or rule added to one and not the other would either be refused in
params.yaml though it works, or be accepted and then fail (or, worse, fall back silently) inside a stage.
"""

from __future__ import annotations

import pytest

from skinlesion import backbones, bundle, calibration, devices, features, images, kinds, labels, metadata, metrics
from skinlesion import params as P
from skinlesion import sampling, sources, tasks
from skinlesion.sources.isic import options as isic_options
from skinlesion.sources.local import layouts

LAYOUTS = ("auto", *layouts.LAYOUTS)

REGISTRIES = {
    "properties.data.properties.source": sources.SOURCES,
    "properties.data.properties.local.properties.layout": LAYOUTS,
    "properties.data.properties.isic.properties.max_per_class.propertyNames": isic_options.CLASSES,
    "properties.metadata.properties.indeterminate": labels.INDETERMINATE,
    "properties.metadata.properties.impute_mean.items": metadata.NUMERIC,
    "properties.images.properties.aspect": images.ASPECTS,
    "properties.images.properties.colour_constancy": images.COLOUR_CONSTANCY,
    "properties.evaluate.properties.threshold": metrics.THRESHOLD_RULES,
    "properties.evaluate.properties.calibration": calibration.METHODS,
    "properties.evaluate.properties.tta": bundle.TTA,
    "properties.evaluate.properties.external.items.properties.layout": LAYOUTS,
    "$defs.hyper.properties.distribute": devices.CHOICES["distribute"],
    "$defs.hyper.properties.xla": devices.CHOICES["xla"],
    "$defs.hyper.properties.input_pipeline": devices.CHOICES["input_pipeline"],
    "$defs.variant.properties.kind": kinds.KINDS,
    "$defs.variant.properties.task": tasks.TASKS,
    "$defs.variant.properties.backbone": backbones.BACKBONES,
    "$defs.variant.properties.sampling.properties.strategy": sampling.STRATEGIES,
    "$defs.variant.properties.features.items": features.KNOWN,
}


def enumerations(node, path=()) -> dict[str, list]:
    """Every `enum` in the schema, by its dotted path."""
    found = {}
    if isinstance(node, dict):
        if "enum" in node:
            found[".".join(path)] = node["enum"]
        for key, value in node.items():
            found.update(enumerations(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.update(enumerations(value, (*path, str(i))))
    return found


def test_every_schema_enumeration_is_tied_to_a_registry():
    # a new enum in the schema needs its registry named here, so that the check below covers it
    assert sorted(enumerations(P.schema())) == sorted(REGISTRIES)


@pytest.mark.parametrize("path", sorted(REGISTRIES))
def test_the_schema_enumeration_has_exactly_its_registrys_entries(path):
    schema = enumerations(P.schema())[path]
    registry = list(REGISTRIES[path])
    assert len(schema) == len(set(map(repr, schema))), f"{path}: an entry is listed twice"
    assert sorted(map(repr, schema)) == sorted(map(repr, registry)), path


def test_the_layout_registry_has_a_reader_for_each_layout():
    assert sorted(layouts.READERS) == sorted(layouts.LAYOUTS)


def test_an_unknown_rule_is_refused_not_read_as_the_default():
    import numpy as np

    from skinlesion.errors import PipelineError

    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(PipelineError, match="unknown threshold rule 'oracle'"):
        metrics.choose_threshold(y, p, "oracle")
    import pandas as pd

    with pytest.raises(ValueError, match="indeterminate must be one of"):
        labels.binary_label(pd.Series(["Benign"]), "maybe")
    with pytest.raises(PipelineError, match="train.xla: 1 is not one of auto, True, False"):
        devices.settings({"xla": 1})
    assert devices.settings({"xla": False})["xla"] is False
