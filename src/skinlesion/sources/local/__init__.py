"""The local source: a dataset already on disk, in one of three layouts, written as the raw layout.

Layouts (data.local.layout; `auto` detects them in this order):
    isic-cli   images/ (or the folder itself) + metadata.csv with an isic_id column; attribution.txt and
               licenses/ are carried over when present. Current archive fields pass through unchanged.
    ham10000   HAM10000_metadata.csv (lesion_id, image_id, dx, dx_type, age, sex, localization) with images
               in images/ or the original HAM10000_images_part_1 / _part_2 folders.
    isic2020   the ISIC 2020 challenge CSV (image_name, patient_id, sex, age_approx,
               anatom_site_general_challenge, diagnosis, benign_malignant, target) with images in train/,
               jpeg/train/, ISIC_2020_Training_JPEG/train/ or images/.

Every layout is normalised to the archive's current field names and vocabulary (diagnosis_1..3,
anatom_site_1, age_approx, ...); retired fields (benign_malignant, diagnosis, target,
anatom_site_general[_challenge]) are translated, then dropped. docs/labels.md has the full mapping.

Images are hard-linked (a copy where linking fails) to out/images/<isic_id>.<ext>; the source folder is
only ever read. A metadata row without an image, or an image without a row, is counted and logged.
The folder is read, not followed: no symbolic link below it is followed or copied (one could point at
/etc/passwd, and data/raw is pushed to a DVC remote). A linked metadata file or image folder is refused in
one line; a linked image skips its row ("image is a symbolic link" in `skipped`), a linked attribution.txt
or license file is not carried over (written from the rows instead), each counted in `links_not_followed`.
`limit` keeps at most N images, chosen from the seed by whole patient / lesion groups and stratified so
the share of malignant (and indeterminate) groups is kept.

The package: layouts.py detects a layout and reads it; records.py normalises each row to the archive's
fields with the translation tables of vocabulary.py; selection.py matches rows to images and applies
`limit`; writer.py writes the raw layout.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from ...errors import PipelineError
from .layouts import LAYOUTS, READERS, detect
from .selection import group_key, match, select
from .writer import write

log = logging.getLogger(__name__)


def fetch(cfg: dict, out: Path, seed: int) -> dict:
    cfg = dict(cfg or {})
    if not cfg.get("path"):
        raise PipelineError("data.local.path is not set: point it at the folder holding the dataset.")
    root = Path(os.path.expanduser(str(cfg["path"])))
    if not root.is_dir():
        raise PipelineError(f"data.local.path: {root} is not a folder (resolved to {root.resolve()}). "
                            "Set data.local.path in params.yaml to the dataset's folder.")
    layout = cfg.get("layout") or "auto"
    if layout == "auto":
        layout = detect(root)
    elif layout not in LAYOUTS:
        raise PipelineError(f"data.local.layout: unknown layout '{layout}'. Allowed: auto, {', '.join(LAYOUTS)}.")
    loaded = READERS[layout](root)
    records, counts = match(loaded)
    if not records:
        raise PipelineError(
            f"data.local: no metadata row of {root} ({layout} layout) has an image "
            f"({counts['rows']} rows, {counts['images_found']} images in {_dirs(loaded.image_dirs)}). "
            "Check data.local.path and data.local.layout.")
    limit = cfg.get("limit")
    if limit is not None:
        if int(limit) < 1:
            raise PipelineError(f"data.local.limit must be a positive number of images or null, got {limit}.")
        records = select(records, int(limit), seed)
    write(records, loaded, Path(out))

    summary = {
        "layout": layout,
        "path": str(root),
        **counts,
        "kept_images": len(records),
        "kept_groups": len({group_key(r) for r in records}) if records else 0,
        "limit": None if limit is None else int(limit),
        "diagnosis_1": _count(r.get("diagnosis_1", "(missing)") for r in records),
        "unmapped": loaded.notes,
        "links_not_followed": len(loaded.links),
    }
    if loaded.links:
        log.warning("local: %d symbolic link(s) in %s not followed, their files skipped (e.g. %s): the local source "
                    "reads only the files inside its folder; copy the files themselves in place of the links",
                    len(loaded.links), root, ", ".join(str(p) for p in loaded.links[:3]))
    log.info("local: %s layout at %s: %d of %d rows kept (%d without image, %d images without row)",
             layout, root, len(records), counts["rows"], counts["rows_without_image"], counts["images_without_row"])
    return summary


def _count(values) -> dict:
    return dict(sorted(Counter(values).items()))


def _dirs(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs) or "(no image folder)"
