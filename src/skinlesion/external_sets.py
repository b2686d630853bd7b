"""The external test sets params name (`evaluate.external`), checked, and where the external stage put them.

Kept apart from skinlesion.external (the stage, which reads sources and decodes images) so that the
evaluate stage, which only reads what that stage wrote, does not depend on the sources' code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import PipelineError

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # as in the schema: the set's folder name under data/external
LAYOUTS = ("auto", "isic-cli", "ham10000", "isic2020")
SPLIT = "external"  # the split column of every external row


def sets(params: dict) -> list[dict]:
    """The external sets params name, checked: safe unique names, a path, a known layout."""
    found = list((params.get("evaluate") or {}).get("external") or [])
    names = set()
    for i, entry in enumerate(found):
        where = f"evaluate.external[{i}]"
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PipelineError(f"{where}.name {name!r} must be a slug: lower-case letters, digits, _ and -, "
                                "at most 64 characters, starting with a letter or digit.")
        if name in names:
            raise PipelineError(f"{where}.name {name!r} is used twice; every external set needs its own name.")
        names.add(name)
        if not entry.get("path"):
            raise PipelineError(f"{where} ({name}) has no path: point it at the set's folder.")
        if entry.get("layout", "auto") not in LAYOUTS:
            raise PipelineError(f"{where}.layout {entry.get('layout')!r} is not one of {', '.join(LAYOUTS)}.")
    return found


def load(external_dir: str | os.PathLike, name: str):
    """(table, shards folder) of one prepared set, checked against what the stage wrote."""
    folder = Path(external_dir) / name
    table, shards = folder / "metadata.parquet", folder / "shards"
    if not table.exists() or not (shards / "index.parquet").exists():
        raise PipelineError(f"external set {name}: {folder} is incomplete or absent; run skinlesion external "
                            f"--out {external_dir} (evaluate.external names it).")
    return table, shards
