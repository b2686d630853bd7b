"""The guard where a second set meets the internal data: an image the model learned from, or chose its
decision on, must not be scored as new.

Overlap is looked for three ways, each where both sides can say:
  isic_id              the same archive image
  lesion_id, patient_id  another image of a lesion or a patient the internal data has (the split rule keeps
                       these together inside the internal data for the same reason; skinlesion.splits)
  pixels               identical decoded images (a sha256 of each image's shard row), so a renamed or
                       re-encoded-losslessly copy is caught too; only when both sides' shards have one shape
An overlap is an error with the counts and a few examples: the fix is in the second set's folder.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .dataset import Split
from .errors import PipelineError

ID_COLUMNS = ("isic_id", "lesion_id", "patient_id")
EXAMPLES = 3


def pixel_hashes(split: Split) -> pd.Series:
    """sha256 of each row's image as stored in the shards, indexed like split.table."""
    out = pd.Series(index=split.table.index, dtype=object)
    if split.shards_dir is None or "shard" not in split.table:
        return out
    for shard, rows in split.table.groupby("shard", sort=True).groups.items():
        data = np.load(split.shards_dir / f"shard-{int(shard):05d}.npy", mmap_mode="r")
        for i, r in zip(rows, split.table.loc[rows, "row"].to_numpy()):
            out[i] = hashlib.sha256(np.ascontiguousarray(data[int(r)]).tobytes()).hexdigest()
    return out


def _values(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table:
        return pd.Series(dtype=str)
    values = table[column].astype("string").str.strip()
    return values[values.notna() & (values != "")]


def find(internal: list[Split], other: Split) -> dict[str, list[str]]:
    """{way: isic_ids of `other`'s rows that overlap the internal splits that way}, ways with none left out."""
    found = {}
    inside = pd.concat([s.table for s in internal], ignore_index=True)
    for column in ID_COLUMNS:
        theirs = _values(other.table, column)
        hit = theirs[theirs.isin(set(_values(inside, column)))]
        if len(hit):
            found[column] = sorted(other.table.loc[hit.index, "isic_id"].astype(str))
    shapes = {_shape(s) for s in internal + [other]}
    if len(shapes) == 1 and None not in shapes:
        ours = set().union(*(set(pixel_hashes(s).dropna()) for s in internal))
        theirs = pixel_hashes(other).dropna()
        hit = theirs[theirs.isin(ours)]
        if len(hit):
            found["pixels"] = sorted(other.table.loc[hit.index, "isic_id"].astype(str))
    return found


def _shape(split: Split) -> tuple | None:
    if split.shards_dir is None or not len(split.table) or "shard" not in split.table:
        return None
    first = int(split.table["shard"].iloc[0])
    return np.load(split.shards_dir / f"shard-{first:05d}.npy", mmap_mode="r").shape[1:]


def check(internal: list[Split], other: Split, what: str, fix: str) -> None:
    """Raise PipelineError naming every way `other` overlaps the internal data, with counts and examples."""
    found = find(internal, other)
    if not found:
        return
    rows = set().union(*map(set, found.values()))
    ways = "; ".join(f"{len(ids)} by {way} (e.g. {', '.join(ids[:EXAMPLES])})" for way, ids in found.items())
    raise PipelineError(f"{what} overlaps the internal data the model was trained, tuned or tested on: {len(rows)} "
                        f"of its {len(other)} images: {ways}. Scored as new they would overstate the model; {fix}")
