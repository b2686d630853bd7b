"""Rows <-> images (one row per isic_id; unmatched rows and images counted and logged), and `limit`:
whole patient / lesion groups, stratified by diagnosis_1.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from ...raw_layout import record_problem
from .records import Loaded

log = logging.getLogger("skinlesion.sources.local")

LABEL_FIELDS = ("diagnosis_1", "diagnosis_2", "diagnosis_3")


def match(loaded: Loaded) -> tuple[list[dict], dict]:
    """Rows that have an image (one row per isic_id); counts of everything that did not match.

    A row whose isic_id or copyright_license could not safely be a file name is skipped with its reason, and
    so is a row whose only image is a symbolic link ("image is a symbolic link": never followed).
    Repeated rows of one isic_id: the first is kept when they agree on the labels (diagnosis_1..3); when they
    disagree, which is right cannot be told, and the id is excluded as a conflict."""
    by_id: dict[str, list[dict]] = {}
    skipped: Counter = Counter()
    invalid = []
    for rec in loaded.records:
        problem = record_problem(rec)
        if problem:
            skipped[problem] += 1
            invalid.append(rec.get("isic_id"))
            continue
        by_id.setdefault(rec["isic_id"], []).append(rec)
    kept, no_image, linked, conflicts, duplicates = [], [], [], [], 0
    for isic_id, rows in by_id.items():
        if len(rows) > 1:
            if len({tuple(r.get(k) for k in LABEL_FIELDS) for r in rows}) > 1:
                conflicts.append(isic_id)
                continue
            duplicates += len(rows) - 1
        if isic_id in loaded.images:
            kept.append(rows[0])
        elif isic_id in loaded.linked_images:  # a link is never followed (it may point anywhere)
            linked.append(isic_id)
        else:
            no_image.append(isic_id)
    if linked:
        skipped["image is a symbolic link"] = len(linked)
        log.warning("local: %d row(s) skipped: their image is a symbolic link, not followed (e.g. %s); copy the "
                    "images themselves into the folder", len(linked),
                    ", ".join(str(loaded.linked_images[i]) for i in sorted(linked)[:3]))
    seen = set(by_id)
    orphans = sorted(set(loaded.images) - seen)
    if no_image:
        log.warning("local: %d metadata row(s) have no image, skipped (e.g. %s)", len(no_image),
                    ", ".join(no_image[:5]))
    if orphans:
        log.warning("local: %d image(s) have no metadata row, skipped (e.g. %s)", len(orphans),
                    ", ".join(orphans[:5]))
    if duplicates:
        log.warning("local: %d duplicate metadata row(s) for an isic_id, first one kept", duplicates)
    if conflicts:
        log.warning("local: %d isic_id(s) have rows with conflicting labels, excluded (e.g. %s)", len(conflicts),
                    ", ".join(sorted(conflicts)[:5]))
    if invalid:
        log.warning("local: %d row(s) skipped: %s (e.g. %s)", len(invalid),
                    ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())
                              if reason != "image is a symbolic link"),
                    ", ".join(repr(str(i)[:40]) for i in invalid[:5]))
    counts = {
        "rows": len(loaded.records),
        "images_found": len(loaded.images),
        "rows_without_image": len(no_image),
        "images_without_row": len(orphans),
        "duplicate_rows": duplicates,
        "conflicting_ids": sorted(conflicts)[:100],
        "invalid_ids": skipped["missing isic_id"] + skipped["bad isic_id"],
        "skipped": dict(sorted(skipped.items())),
    }
    return sorted(kept, key=lambda r: r["isic_id"]), counts


def group_key(rec: dict) -> str:
    return rec.get("patient_id") or rec.get("lesion_id") or rec["isic_id"]


def groups_of(records: list[dict]) -> dict[str, list[int]]:
    """Connected groups: images sharing a patient_id or a lesion_id are one group (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    keys = []
    for rec in records:
        own = "i:" + rec["isic_id"]
        links = [own]
        if rec.get("patient_id"):
            links.append("p:" + rec["patient_id"])
        if rec.get("lesion_id"):
            links.append("l:" + rec["lesion_id"])
        for other in links[1:]:
            union(own, other)
        keys.append(own)
    groups: dict[str, list[int]] = {}
    for i, own in enumerate(keys):
        groups.setdefault(find(own), []).append(i)
    return groups


_STRATUM_ORDER = {"Malignant": 0, "Indeterminate": 1, "Benign": 2}


def select(records: list[dict], limit: int, seed: int) -> list[dict]:
    """At most `limit` records, whole groups only, each diagnosis_1 stratum keeping its share of images."""
    if limit >= len(records):
        return records
    groups = groups_of(records)
    strata: dict[str, list[str]] = {}
    for key in sorted(groups):
        labels = [records[i].get("diagnosis_1") for i in groups[key]]
        stratum = min(labels, key=lambda d: _STRATUM_ORDER.get(d, 3)) or "(missing)"
        strata.setdefault(stratum, []).append(key)
    sizes = {s: sum(len(groups[k]) for k in keys) for s, keys in strata.items()}
    exact = {s: limit * n / len(records) for s, n in sizes.items()}
    quota = {s: int(np.floor(v)) for s, v in exact.items()}
    for s in sorted(exact, key=lambda s: (-(exact[s] - quota[s]), s))[: limit - sum(quota.values())]:
        quota[s] += 1
    rng = np.random.default_rng([seed, 7])
    chosen: list[int] = []
    for stratum in sorted(strata):
        keys = strata[stratum]
        taken = 0
        for j in rng.permutation(len(keys)):
            size = len(groups[keys[j]])
            if taken + size <= quota[stratum]:
                chosen.extend(groups[keys[j]])
                taken += size
            if taken == quota[stratum]:
                break
    return [records[i] for i in sorted(chosen)]
