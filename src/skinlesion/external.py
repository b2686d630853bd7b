"""The external stage: every external test set of `evaluate.external`, prepared exactly as training data was.

    data/external/manifest.json               the sets (name, path, layout), their counts, and the train means
                                              their missing values were filled with
    data/external/<name>/metadata.parquet     typed, labelled, cleaned rows (split = "external")
    data/external/<name>/metadata_summary.json  rows in / kept / dropped with reasons, counts per class
    data/external/<name>/shards/              images at images.size, the images stage's shards + index
    data/external/<name>/attribution.txt, licenses/, source.json   what the set's folder says of its images

Each set is a folder on disk in any layout the local source reads (isic-cli, ham10000, isic2020, auto).
It goes through the same code as training data: the local source's reader and normalisation, the metadata
stage's typing, labelling and cleaning (metadata.build, with the same `metadata:` params), and the images
stage's decoder and shard writer (same `images:` params). Nothing is fitted on an external set: a missing
age or lesion diameter is filled with the INTERNAL train split's mean (data/interim/metadata_summary.json,
`imputation_means_train`), exactly as a missing value of a test image is, and a field absent from the whole
set (ISIC 2017 has no site and no diameter) is simply missing everywhere, flagged by its `_missing`
indicator. The raw copy made on the way (hard links) is removed; only the shards stay.

With `evaluate.external: []` the stage still runs and writes a manifest with no sets, so both runners'
DAGs are the same whatever the params say.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path

from . import images, metadata
from .errors import PipelineError
from .external_sets import SPLIT, load, sets  # noqa: F401  (load: for callers of this module)
from .io import atomic_path, write_json

log = logging.getLogger(__name__)
def _root(entry: dict, i: int) -> Path:
    root = Path(os.path.expanduser(str(entry["path"])))
    where = f"evaluate.external[{i}] ({entry['name']})"
    if not root.exists():
        raise PipelineError(f"{where}: {root} does not exist (resolved to {root.resolve()}, relative to the folder "
                            "the stage runs in). Fix its path in the params file or remove the entry.")
    if not root.is_dir():
        raise PipelineError(f"{where}: {root} is not a folder.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise PipelineError(f"{where}: {root} is not readable (permission denied).")
    return root


def train_means(summary_path: str | os.PathLike) -> dict:
    """The internal train split's imputation means, as the metadata stage recorded them."""
    return dict(metadata.load_summary(summary_path, "external sets are imputed with the internal train means "
                                                    "it records")["imputation_means_train"])


def impute_with(frame, means: dict) -> dict:
    """Fill the imputed columns' missing cells with the given (internal train) means, 0 where train had none,
    as metadata.impute does. `<column>_missing` says which cells were missing; returns what was filled."""
    filled = {}
    for column, mean in means.items():
        flag = frame[f"{column}_missing"].astype(bool)
        value = 0.0 if mean is None else float(mean)
        frame.loc[flag, column] = value
        filled[column] = {"value": value, "cells": int(flag.sum())}
    return filled


def prepare(entry: dict, root: Path, out: Path, params: dict, means: dict) -> dict:
    """One external set -> out/ (metadata.parquet, metadata_summary.json, shards/, attribution, licenses)."""
    from .sources import local

    name = entry["name"]
    out.mkdir(parents=True)
    raw = out / ".raw"
    try:
        source = local.fetch({"path": str(root), "layout": entry.get("layout", "auto")}, raw, seed=0)  # no limit: the seed picks nothing
        # The metadata stage's own cleaning and labelling; its split and its imputation are replaced below
        # (nothing is fitted on an external set).
        cleaning = {"seed": 0, "split": {"val": 0.15, "test": 0.15},
                    "metadata": copy.deepcopy(params.get("metadata") or {})}
        frame, summary = metadata.build(raw, cleaning)
    except PipelineError as exc:
        raise PipelineError(f"external set {name} ({root}): {exc}") from None
    frame["split"] = SPLIT
    filled = impute_with(frame, means)
    summary.update(split=SPLIT, imputation_means_train=means, imputed=filled, counts=metadata.counts(frame),
                   path=str(entry["path"]), layout=source.get("layout"), name=name)
    summary.pop("groups_merged", None)
    frame.to_parquet(out / "metadata.parquet", index=False)
    write_json(out / "metadata_summary.json", summary)
    shards = images.run(out / "metadata.parquet", raw, out / "shards", params)
    for item in ("attribution.txt", "licenses"):
        if (raw / item).is_dir():
            shutil.copytree(raw / item, out / item)
        elif (raw / item).exists():
            shutil.copyfile(raw / item, out / item)
    write_json(out / "source.json", {"source": "external", "name": name, "path": str(entry["path"]),
                                     "layout": source.get("layout"), "images": shards["images"],
                                     **{k: source[k] for k in ("rows", "images_found", "rows_without_image",
                                                               "images_without_row", "diagnosis_1") if k in source}})
    shutil.rmtree(raw)
    n_malignant = int(frame["label"].astype(int).sum())
    log.info("external %s: %d of %d rows kept (%d malignant), %d images in shards; filled with internal train means: %s",
             name, summary["rows_out"], summary["rows_in"], n_malignant, shards["images"], filled)
    return {"name": name, "path": str(entry["path"]), "layout": source.get("layout"), "rows_in": summary["rows_in"],
            "rows": summary["rows_out"], "images": shards["images"], "unreadable": shards["unreadable"],
            "malignant": n_malignant, "dropped": summary["dropped"]}


def run(params: dict, out: str | os.PathLike, summary_path: str | os.PathLike) -> dict:
    found = sets(params)
    roots = [_root(entry, i) for i, entry in enumerate(found)]  # every path checked before any work
    means = train_means(summary_path) if found else {}
    with atomic_path(out, mark="manifest.json") as tmp:
        tmp.mkdir(parents=True)
        done = [prepare(entry, root, tmp / entry["name"], params, means) for entry, root in zip(found, roots)]
        manifest = {"sets": done, "imputation_means_train": means, "imputation_means_from": str(summary_path)}
        write_json(tmp / "manifest.json", manifest)
    log.info("external: %d set(s) -> %s%s", len(done), out, "" if done else " (evaluate.external is empty)")
    return manifest
