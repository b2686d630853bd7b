"""The guard where a second set meets the internal data: an image the model learned from, or chose its
decision on, must not be scored as new.

Overlap is looked for three ways, each where both sides can say:
  isic_id              the same archive image
  lesion_id, patient_id  another image of a lesion or a patient the internal data has (the split rule keeps
                       these together inside the internal data for the same reason; skinlesion.splits)
  pixels               identical decoded images (a sha256 of each image's shard row), so a renamed or
                       re-encoded-losslessly copy is caught too; only when both sides' shards have one shape
An overlap is an error with the counts and a few examples: the fix is in the second set's folder.

A bundle carries what its model saw (SEEN, seen.json: the train and validation splits' ids and pixel
hashes, written by the train stage), so `skinlesion recalibrate`, far from the training data, checks a
clinic's set against it the same three ways (find_seen); `--exclude-overlap` leaves the overlapping images
out instead, with their count in the report.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .dataset import Split
from .errors import PipelineError

ID_COLUMNS = ("isic_id", "lesion_id", "patient_id")
EXAMPLES = 3
SEEN = "seen.json"  # in a bundle: what the model learned from or chose its decision on (see record())
SEEN_VALUE_CHARS = 64  # an id or a hash in seen.json, as raw_layout.ISIC_ID bounds an id; longer ids are hashed
SEEN_HASH_CHARS = 32  # of each pixel sha256 kept in seen.json: 128 bits, no collision among any real archive


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
    inside = pd.concat([s.table for s in internal], ignore_index=True)
    known = {column: set(_values(inside, column)) for column in ID_COLUMNS}
    shapes = {_shape(s) for s in internal + [other]}
    theirs = None
    if len(shapes) == 1 and None not in shapes:
        known["pixels"] = set().union(*(set(pixel_hashes(s).dropna()) for s in internal))
        theirs = pixel_hashes(other)
    return _hits(known, other.table, theirs)


def _key(value: str) -> str:
    """An id as seen.json keeps it: as it is up to SEEN_VALUE_CHARS characters, else a hash of it."""
    return value if len(value) <= SEEN_VALUE_CHARS else "~" + hashlib.sha256(value.encode()).hexdigest()[:40]


def _hits(known: dict[str, set], table: pd.DataFrame, hashes: pd.Series | None) -> dict[str, list[str]]:
    """{way: the isic_ids of `table`'s rows whose value that way is in `known[way]`}; ways with none left out."""
    found = {}
    for column in ID_COLUMNS:
        theirs = _values(table, column).map(_key)
        hit = theirs[theirs.isin({_key(v) for v in known.get(column, set())})]
        if len(hit):
            found[column] = sorted(table.loc[hit.index, "isic_id"].astype(str))
    if hashes is not None and known.get("pixels"):
        theirs = hashes.dropna()
        theirs = theirs.str[:SEEN_HASH_CHARS] if len(theirs) else theirs
        hit = theirs[theirs.isin({h[:SEEN_HASH_CHARS] for h in known["pixels"]})]
        if len(hit):
            found["pixels"] = sorted(table.loc[hit.index, "isic_id"].astype(str))
    return found


def record(splits: list[Split], with_pixels: bool) -> dict:
    """seen.json's content: the ids (each way) and, for an image model, the pixel hashes of `splits`."""
    table = pd.concat([s.table for s in splits], ignore_index=True)
    seen: dict = {"note": "what the model learned from or chose its decision on (train and validation splits): "
                          "skinlesion recalibrate refuses a local set that overlaps it (skinlesion.overlap)"}
    for column in ID_COLUMNS:
        seen[column] = sorted({_key(v) for v in _values(table, column)})
    hashes = set()
    if with_pixels:
        for split in splits:
            hashes |= {h[:SEEN_HASH_CHARS] for h in pixel_hashes(split).dropna()}
    seen["pixels"] = sorted(hashes)
    shapes = {_shape(s) for s in splits} if with_pixels else set()
    seen["pixels_shape"] = list(next(iter(shapes))) if len(shapes) == 1 and None not in shapes else None
    return seen


def find_seen(seen: dict, other: Split, with_pixels: bool) -> dict[str, list[str]]:
    """find(), against a bundle's seen.json instead of the internal splits themselves."""
    known = {way: set(seen.get(way) or []) for way in (*ID_COLUMNS, "pixels")}
    hashes = pixel_hashes(other) if with_pixels and pixels_comparable(seen, other) else None
    return _hits(known, other.table, hashes)


def pixels_comparable(seen: dict, other: Split) -> bool:
    """Whether `other`'s images can be matched against seen.json's pixel hashes (same decoded shape)."""
    return bool(seen.get("pixels")) and bool(seen.get("pixels_shape")) and \
        list(_shape(other) or []) == list(seen["pixels_shape"])


def describe(found: dict[str, list[str]], n: int, what: str, against: str) -> str:
    rows = set().union(*map(set, found.values()))
    ways = "; ".join(f"{len(ids)} by {way} (e.g. {', '.join(ids[:EXAMPLES])})" for way, ids in found.items())
    return f"{what} overlaps {against}: {len(rows)} of its {n} images: {ways}"


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
    raise PipelineError(describe(found, len(other), what, "the internal data the model was trained, tuned or tested "
                                 "on") + f". Scored as new they would overstate the model; {fix}")
