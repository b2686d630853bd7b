"""The raw layout from matched records: images hard-linked (copied where linking fails) to
images/<isic_id>.<ext>, metadata.csv, attribution.txt and licenses/. The dataset folder is only ever read.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ...raw_layout import LICENSE_TEXTS, license_problem, write_attribution, write_licenses, write_metadata_csv
from .records import Loaded

log = logging.getLogger("skinlesion.sources.local")

MAX_LICENSE_CHARS = 1_000_000  # of a license file carried over from the dataset folder


def _place(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "linked"
    except OSError:
        shutil.copyfile(src, dst)
        return "copied"


def write(records: list[dict], loaded: Loaded, out: Path) -> None:
    images = out / "images"
    images.mkdir(parents=True)
    how = {"linked": 0, "copied": 0}
    for rec in records:
        src = loaded.images[rec["isic_id"]]
        ext = src.suffix.lower()
        ext = ".jpg" if ext == ".jpeg" else ext
        how[_place(src, images / f"{rec['isic_id']}{ext}")] += 1
    log.info("local: %d image(s) hard-linked, %d copied", how["linked"], how["copied"])
    write_metadata_csv(records, out / "metadata.csv")
    if loaded.attribution_file is not None:
        shutil.copyfile(loaded.attribution_file, out / "attribution.txt")
    else:
        write_attribution(records, out / "attribution.txt")
    texts = {}
    if loaded.licenses_dir is not None:
        for p in sorted(loaded.licenses_dir.glob("*.txt")):
            if license_problem(p.stem) is None and p.is_file():  # a name that is a license slug, nothing else
                with open(p, encoding="utf-8", errors="replace") as fh:
                    texts[p.stem] = fh.read(MAX_LICENSE_CHARS)
    in_use = {r["copyright_license"] for r in records if r.get("copyright_license")}
    write_licenses(sorted(in_use | set(texts)), out / "licenses", texts={**LICENSE_TEXTS, **texts})
