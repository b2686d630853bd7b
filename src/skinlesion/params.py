"""Loading and validating params.yaml: one clear error naming the key and what is allowed."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import PipelineError

DEFAULT_PARAMS = "params.yaml"


@lru_cache(maxsize=1)
def schema() -> dict:
    text = resources.files("skinlesion").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def schema_path() -> Path:
    return Path(str(resources.files("skinlesion").joinpath("schemas/params.schema.yaml")))


def validate(params: Any, origin: str = DEFAULT_PARAMS) -> dict:
    """Raise PipelineError naming the first offending key; return params unchanged otherwise."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if not errors:
        return params
    error = jsonschema.exceptions.best_match(errors)
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    allowed = ""
    if error.validator == "enum":
        allowed = f" Allowed: {', '.join(map(str, error.validator_value))}."
    elif error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        if known:
            allowed = f" Known keys here: {', '.join(known)}."
    more = f" ({len(errors) - 1} more problem(s) after this one.)" if len(errors) > 1 else ""
    raise PipelineError(f"{origin}: invalid value at '{where}': {error.message}.{allowed}{more}")


def load(path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"params file {path} not found. Run from the project root or pass --params FILE.")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML: {exc}") from None
    return validate(params, origin=str(path))
