"""Which params.yaml keys each pipeline stage reads: the one list both runners are held to.

The Snakemake rules pass these values as `params:` (so a change reruns the stage), dvc.yaml lists
the same keys under `params:`, and tests/test_dag_agreement.py fails when the two drift apart.
`{variant}` stands for the per-variant stages' wildcard (DVC's ${key}).
"""

from __future__ import annotations

STAGE_PARAMS: dict[str, list[str]] = {
    "fetch": ["seed", "data"],
    "metadata": ["seed", "metadata", "split"],
    "images": ["images"],
    "train": ["seed", "data.source", "train", "variants.{variant}"],
    "evaluate": ["seed", "evaluate"],
    "compare": ["variants"],
}


def lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


def values(params: dict, stage: str, **wildcards) -> dict:
    """{key: value} of what `stage` reads, for Snakemake's params rerun trigger."""
    return {key.format(**wildcards): lookup(params, key.format(**wildcards)) for key in STAGE_PARAMS[stage]}
