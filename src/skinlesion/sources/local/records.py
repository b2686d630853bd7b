"""What a layout reader found, and each row normalised to the archive's current fields: retired fields
are translated (vocabulary.py), then dropped; a value that does not map is noted with its count, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .vocabulary import B, BENIGN_MALIGNANT, FLAT_DIAGNOSIS, M, RETIRED, SITE_GENERAL


@dataclass
class Loaded:
    """What a layout reader found: normalised records, the image index, and what to carry over."""

    records: list[dict]
    images: dict[str, Path]
    image_dirs: list[Path]
    attribution_file: Path | None = None
    licenses_dir: Path | None = None
    notes: dict[str, dict] = field(default_factory=dict)  # e.g. unmapped values and their counts
    root: Path | None = None  # the dataset folder: nothing is read outside it, no link below it followed
    linked_images: dict[str, Path] = field(default_factory=dict)  # isic_id -> an image that is a link: skipped
    links: list[Path] = field(default_factory=list)  # every symbolic link not followed (images included)

    def note(self, kind: str, value) -> None:
        bucket = self.notes.setdefault(kind, {})
        bucket[str(value)] = bucket.get(str(value), 0) + 1


def round_age(age: float) -> int:
    """The archive's age_approx: 5-year steps, 85 standing for 85 and older."""
    return int(min(85, 5 * round(age / 5)))


def normal_age(value, loaded: Loaded):
    if value is None:
        return None
    try:
        age = float(value)
    except ValueError:
        loaded.note("age", value)
        return None
    if not np.isfinite(age) or age < 0:
        loaded.note("age", value)
        return None
    return round_age(age)


def normal_sex(value, loaded: Loaded):
    if value is None:
        return None
    sex = value.lower()
    if sex in ("male", "female"):
        return sex
    loaded.note("sex", value)  # 'unknown' and the like: missing
    return None


def normalise(row: dict, loaded: Loaded) -> dict:
    """Current archive fields from a row that may carry retired ones; retired fields are dropped."""
    rec = {k: v for k, v in row.items() if k not in RETIRED}
    bm = row.get("benign_malignant")
    flat = row.get("diagnosis")
    if "diagnosis_1" not in rec:
        d1 = None
        if bm is not None:
            d1 = BENIGN_MALIGNANT.get(bm.lower())
            if d1 is None:
                loaded.note("benign_malignant", bm)
        elif row.get("target") in ("0", "1", "0.0", "1.0"):
            d1 = M if float(row["target"]) == 1 else B
        mapped = FLAT_DIAGNOSIS.get(flat.lower()) if flat else None
        if flat and mapped is None and flat.lower() != "unknown":
            loaded.note("diagnosis", flat)
        if mapped is not None:
            if d1 is None and bm is None and "target" not in row:
                d1 = mapped[0]
            if mapped[0] == d1:
                rec["diagnosis_2"], rec["diagnosis_3"] = mapped[1], mapped[2]
            else:  # the flat diagnosis and benign_malignant disagree: trust benign_malignant
                loaded.note("diagnosis disagrees with benign_malignant", f"{flat} / {bm or row.get('target')}")
        rec["diagnosis_1"] = d1
    if "anatom_site_1" not in rec:
        general = row.get("anatom_site_general_challenge") or row.get("anatom_site_general")
        if general:
            site = SITE_GENERAL.get(general.lower())
            if site is None:
                loaded.note("anatom_site_general", general)
            rec["anatom_site_1"] = site
    if "age_approx" in rec:
        rec["age_approx"] = normal_age(rec["age_approx"], loaded)
    if "sex" in rec:
        rec["sex"] = normal_sex(rec["sex"], loaded)
    return {k: v for k, v in rec.items() if v is not None}
