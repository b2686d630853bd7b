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


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice: YAML leaves it to the reader, DVC refuses it, and so do we (PyYAML's
    safe_load would silently keep the last value)."""

    def __init__(self, key: Any, first_line: int, second_line: int, where: str):
        self.key, self.first_line, self.second_line, self.where = key, first_line, second_line, where
        super().__init__(None, None, f"duplicate key {key!r} (lines {first_line} and {second_line} of {where})")

    def __str__(self) -> str:
        lines = (f"lines {self.first_line} and {self.second_line}" if self.first_line != self.second_line
                 else f"line {self.first_line}")
        return f"{self.where}: duplicate key {self.key!r} at {lines}; keep one (DVC refuses this file too)"


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, at any depth, naming its dotted path.
    Merge keys (`<<: *x`) still work: a key written beside a merge overrides the merged one, as YAML says."""

    def construct_document(self, node):
        self._check_unique(node, (), set())
        return super().construct_document(node)

    def _check_unique(self, node, path: tuple, visited: set) -> None:
        if id(node) in visited:  # an alias: checked where it was anchored
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, path + (i,), visited)
        elif isinstance(node, yaml.MappingNode):
            seen: dict = {}  # key -> its node
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_unique(value_node, path, visited)
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(".".join(map(str, path + (key,))), first.start_mark.line + 1,
                                            key_node.start_mark.line + 1, self.name)
                self._check_unique(value_node, path + (key,), visited)


def load_yaml(text: str, origin: str = DEFAULT_PARAMS) -> Any:
    """`text` parsed as YAML like yaml.safe_load, but refusing duplicate keys (DuplicateKeyError names the key,
    both lines and `origin`). Every reader of a params file uses this (params.load, the Snakefile)."""
    loader = UniqueKeyLoader(text)
    loader.name = str(origin)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> Any:
    """A params-like YAML file, parsed by load_yaml; PipelineError (one line, naming the file) if it is not
    valid YAML or names a key twice."""
    path = Path(path)
    try:
        return load_yaml(path.read_text(encoding="utf-8"), origin=str(path))
    except DuplicateKeyError as exc:
        raise PipelineError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None


@lru_cache(maxsize=None)
def schema(name: str = "params") -> dict:
    """A schema shipped in skinlesion/schemas: `params` (params.yaml), `bundle` (a model bundle's bundle.json)."""
    text = resources.files("skinlesion").joinpath(f"schemas/{name}.schema.yaml").read_text()
    return load_yaml(text, origin=str(schema_path(name)))


def schema_path(name: str = "params") -> Path:
    return Path(str(resources.files("skinlesion").joinpath(f"schemas/{name}.schema.yaml")))


def validate(params: Any, origin: str = DEFAULT_PARAMS, schema_name: str = "params") -> Any:
    """Raise PipelineError naming the first offending key; return params unchanged otherwise. `schema_name`:
    which of skinlesion/schemas to check against (the params schema, or `bundle` for bundle.json)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema(schema_name))
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
    expected = error.schema.get("description") if isinstance(error.schema, dict) else None
    if expected and schema_name != "params":
        allowed += f" Expected: {expected}."
    message = error.message if schema_name == "params" else " ".join(_short(error.message).split())
    more = f" ({len(errors) - 1} more problem(s) after this one.)" if len(errors) > 1 else ""
    raise PipelineError(f"{origin}: invalid value at '{where}': {message}.{allowed}{more}")


def _short(message: str, limit: int = 200) -> str:
    """jsonschema's message quotes the offending value whole: a huge value is cut, so the error stays a line."""
    return message if len(message) <= limit else message[:limit] + "..."


def load(path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"params file {path} not found. Run from the project root or pass --params FILE.")
    return validate(read_yaml(path), origin=str(path))
