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
`limit` keeps at most N images, chosen from the seed by whole patient / lesion groups and stratified so
the share of malignant (and indeterminate) groups is kept.
"""

from __future__ import annotations

from collections import Counter

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import PipelineError
from ..raw_layout import (
    IMAGE_SUFFIXES, LICENSE_TEXTS, license_problem, read_csv, record_problem, write_attribution, write_licenses,
    write_metadata_csv,
)

log = logging.getLogger(__name__)

LAYOUTS = ("isic-cli", "ham10000", "isic2020")
LAYOUT_HELP = (
    "  isic-cli: metadata.csv with an isic_id column, images in images/ (isic-cli's download layout)\n"
    "  ham10000: HAM10000_metadata.csv (lesion_id, image_id, dx, ...), images in images/ or "
    "HAM10000_images_part_1/ and HAM10000_images_part_2/\n"
    "  isic2020: a CSV with image_name and benign_malignant or target (ISIC 2020 challenge), images in "
    "train/, jpeg/train/ or images/"
)

B, I, M = "Benign", "Indeterminate", "Malignant"
MEL2 = "Malignant melanocytic proliferations (Melanoma)"
BCC2 = "Malignant adnexal epithelial proliferations - Follicular"
SCC2 = "Malignant epidermal proliferations"
NEV2 = "Benign melanocytic proliferations"
EPI2 = "Benign epidermal proliferations"
FIB2 = "Benign soft tissue proliferations - Fibro-histiocytic"
VASC2 = "Benign soft tissue proliferations - Vascular"

# HAM10000 dx -> (diagnosis_1, diagnosis_2, diagnosis_3, melanocytic). akiec (actinic keratosis /
# intraepithelial carcinoma = Bowen's disease) is read as squamous cell carcinoma in situ: malignant in
# the usual binary reading of HAM10000, and the squamous class of the five-class study.
HAM_DX = {
    "nv": (B, NEV2, "Nevus", True),
    "bkl": (B, EPI2, "Pigmented benign keratosis", False),
    "df": (B, FIB2, "Dermatofibroma", False),
    "vasc": (B, VASC2, None, False),
    "mel": (M, MEL2, "Melanoma, NOS", True),
    "bcc": (M, BCC2, "Basal cell carcinoma", False),
    "akiec": (M, SCC2, "Squamous cell carcinoma in situ", False),
}
HAM_DX_TYPE = {
    "histo": "histopathology",
    "follow_up": "serial imaging showing no change",
    "consensus": "single image expert consensus",
    "confocal": "confocal microscopy with consensus dermoscopy",
}
HAM_SITE = {
    "scalp": "Head and neck", "face": "Head and neck", "ear": "Head and neck", "neck": "Head and neck",
    "back": "Trunk", "chest": "Trunk", "abdomen": "Trunk", "trunk": "Trunk",
    "upper extremity": "Upper extremity", "hand": "Upper extremity",
    "lower extremity": "Lower extremity", "foot": "Lower extremity",
    "genital": "Anogenital region",
    # 'acral' (hand or foot: which limb is unknown) and 'unknown' become missing.
}
HAM_ATTRIBUTION = "ViDIR Group, Medical University of Vienna"
HAM_LICENSE = "CC-BY-NC"

# Retired archive fields (ISIC 2020 CSV, older exports).
BENIGN_MALIGNANT = {
    "benign": B, "malignant": M, "indeterminate": I,
    "indeterminate/benign": I, "indeterminate/malignant": I,
}
FLAT_DIAGNOSIS = {  # lower-case flat `diagnosis` -> (diagnosis_1, diagnosis_2, diagnosis_3)
    "melanoma": (M, MEL2, "Melanoma, NOS"),
    "melanoma metastasis": (M, MEL2, "Melanoma metastasis"),
    "basal cell carcinoma": (M, BCC2, "Basal cell carcinoma"),
    "squamous cell carcinoma": (M, SCC2, "Squamous cell carcinoma, NOS"),
    "nevus": (B, NEV2, "Nevus"),
    "seborrheic keratosis": (B, EPI2, "Seborrheic keratosis"),
    "pigmented benign keratosis": (B, EPI2, "Pigmented benign keratosis"),
    "solar lentigo": (B, EPI2, "Solar lentigo"),
    "lichenoid keratosis": (B, EPI2, "Lichen planus like keratosis"),
    "dermatofibroma": (B, FIB2, "Dermatofibroma"),
    "vascular lesion": (B, VASC2, None),
    "lentigo nos": (B, None, None),
    "lentigo simplex": (B, None, None),
    "cafe-au-lait macule": (B, None, None),
    "actinic keratosis": (I, "Indeterminate epidermal proliferations", "Solar or actinic keratosis"),
    "atypical melanocytic proliferation": (I, "Indeterminate melanocytic proliferations",
                                           "Atypical melanocytic neoplasm"),
}
SITE_GENERAL = {
    "head/neck": "Head and neck",
    "torso": "Trunk", "anterior torso": "Trunk", "posterior torso": "Trunk", "lateral torso": "Trunk",
    "upper extremity": "Upper extremity",
    "lower extremity": "Lower extremity",
    # 'palms/soles' (which limb is unknown) and 'oral/genital' (oral is not anogenital) become missing.
}
RETIRED = ("benign_malignant", "diagnosis", "target", "anatom_site_general", "anatom_site_general_challenge")
ISIC2020_ATTRIBUTION = "ISIC 2020 Challenge Dataset, International Skin Imaging Collaboration"
ISIC2020_LICENSE = "CC-BY-NC"
SITES_1 = ("Head and neck", "Trunk", "Upper extremity", "Lower extremity", "Anogenital region")
MAX_LICENSE_CHARS = 1_000_000  # of a license file carried over from the dataset folder
_MISSING = {"", "nan", "NaN", "NA", "N/A", "null", "None"}


@dataclass
class Loaded:
    """What a layout reader found: normalised records, the image index, and what to carry over."""

    records: list[dict]
    images: dict[str, Path]
    image_dirs: list[Path]
    attribution_file: Path | None = None
    licenses_dir: Path | None = None
    notes: dict[str, dict] = field(default_factory=dict)  # e.g. unmapped values and their counts

    def note(self, kind: str, value) -> None:
        bucket = self.notes.setdefault(kind, {})
        bucket[str(value)] = bucket.get(str(value), 0) + 1


# ----------------------------------------------------------------------------------------------------
# entry point


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
        "kept_groups": len({_group_key(r) for r in records}) if records else 0,
        "limit": None if limit is None else int(limit),
        "diagnosis_1": _count(r.get("diagnosis_1", "(missing)") for r in records),
        "unmapped": loaded.notes,
    }
    log.info("local: %s layout at %s: %d of %d rows kept (%d without image, %d images without row)",
             layout, root, len(records), counts["rows"], counts["rows_without_image"], counts["images_without_row"])
    return summary


def _count(values) -> dict:
    return dict(sorted(Counter(values).items()))


def _dirs(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs) or "(no image folder)"


# ----------------------------------------------------------------------------------------------------
# layout detection


def _header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            line = fh.readline()
    except OSError:
        return []
    sep = "\t" if "\t" in line else ","
    return [c.strip().strip('"').strip() for c in line.rstrip("\r\n").split(sep)]


def _child(root: Path, name: str) -> Path | None:
    """root/name, matched case-insensitively."""
    exact = root / name
    if exact.exists():
        return exact
    lower = name.lower()
    for p in sorted(root.iterdir()):
        if p.name.lower() == lower:
            return p
    return None


def _ham_metadata(root: Path) -> Path | None:
    for name in ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata"):
        p = _child(root, name)
        if p is not None and p.is_file():
            return p
    for p in sorted(root.glob("*.csv")):
        cols = set(_header(p))
        if {"image_id", "dx", "lesion_id"} <= cols:
            return p
    return None


def _isic2020_csv(root: Path) -> Path | None:
    candidates = []
    for p in sorted(root.glob("*.csv")):
        cols = set(_header(p))
        if "image_name" in cols and cols & {"benign_malignant", "target"}:
            # prefer the richest file (v2 has lesion_id), then the shortest name
            candidates.append((-len(cols & {"lesion_id", "diagnosis", "benign_malignant"}), len(p.name), p.name, p))
    return min(candidates)[3] if candidates else None


def detect(root: Path) -> str:
    metadata = root / "metadata.csv"
    if metadata.is_file() and "isic_id" in _header(metadata):
        return "isic-cli"
    if _ham_metadata(root) is not None:
        return "ham10000"
    if _isic2020_csv(root) is not None:
        return "isic2020"
    seen = ", ".join(sorted(p.name for p in root.iterdir())[:12]) or "(empty)"
    raise PipelineError(
        f"data.local: cannot tell the layout of {root} (it holds: {seen}). The local source reads:\n"
        f"{LAYOUT_HELP}\nPoint data.local.path at such a folder, or set data.local.layout explicitly.")


# ----------------------------------------------------------------------------------------------------
# readers: one per layout, all returning normalised records


def _read_table(path: Path) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        sep = "\t" if "\t" in fh.readline() else ","
    frame = read_csv(path, "repair or re-export it as UTF-8 CSV (data.local.path)", dtype=str,
                     keep_default_na=False, sep=sep, encoding="utf-8-sig")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _rows(frame: pd.DataFrame):
    """Each row as a dict of its non-empty, stripped cells."""
    columns = list(frame.columns)
    for values in frame.itertuples(index=False, name=None):
        row = {}
        for c, v in zip(columns, values):
            v = str(v).strip()
            if v not in _MISSING:
                row[c] = v
        yield row


def _image_index(dirs: list[Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for folder in dirs:
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file():
                if p.stem not in index:  # Kaggle's copy ships each HAM folder twice; first one wins
                    index[p.stem] = p
    return index


def _image_dirs(root: Path, candidates: list[str]) -> list[Path]:
    """The candidate image folders that exist (matched case-insensitively), else the root itself."""
    found = []
    for name in candidates:
        p = root
        for part in name.split("/"):
            p = _child(p, part) if p is not None and p.is_dir() else None
        if p is not None and p.is_dir():
            found.append(p)
    return found or [root]


def read_isic_cli(root: Path) -> Loaded:
    path = root / "metadata.csv"
    if not path.is_file():
        raise PipelineError(f"data.local: {path} not found; the isic-cli layout needs metadata.csv.\n{LAYOUT_HELP}")
    frame = _read_table(path)
    if "isic_id" not in frame.columns:
        raise PipelineError(f"data.local: {path} has no isic_id column, so it is not in isic-cli's layout.\n"
                            f"{LAYOUT_HELP}")
    dirs = _image_dirs(root, ["images"])
    loaded = Loaded([], _image_index(dirs), dirs)
    for row in _rows(frame):
        loaded.records.append(normalise(row, loaded))
    attribution = root / "attribution.txt"
    licenses = root / "licenses"
    loaded.attribution_file = attribution if attribution.is_file() else None
    loaded.licenses_dir = licenses if licenses.is_dir() else None
    return loaded


def read_ham10000(root: Path) -> Loaded:
    path = _ham_metadata(root)
    if path is None:
        raise PipelineError(f"data.local: no HAM10000_metadata.csv in {root}.\n{LAYOUT_HELP}")
    frame = _read_table(path)
    missing = {"image_id", "dx"} - set(frame.columns)
    if missing:
        raise PipelineError(f"data.local: {path} lacks column(s) {sorted(missing)}; HAM10000's metadata has "
                            "lesion_id, image_id, dx, dx_type, age, sex, localization.")
    dirs = _image_dirs(root, ["images", "HAM10000_images_part_1", "HAM10000_images_part_2",
                                          "HAM10000_images"])
    loaded = Loaded([], _image_index(dirs), dirs)
    for row in _rows(frame):
        rec = {
            "isic_id": row.get("image_id"),
            "attribution": HAM_ATTRIBUTION,
            "copyright_license": HAM_LICENSE,
            "image_type": "dermoscopic",
        }
        if row.get("lesion_id"):
            rec["lesion_id"] = row["lesion_id"]
        dx = row.get("dx", "").lower()
        if dx in HAM_DX:
            d1, d2, d3, melanocytic = HAM_DX[dx]
            rec.update(diagnosis_1=d1, diagnosis_2=d2, diagnosis_3=d3, melanocytic=melanocytic)
        else:
            loaded.note("dx", dx or "(missing)")
        if row.get("dx_type"):
            confirm = HAM_DX_TYPE.get(row["dx_type"].lower())
            if confirm:
                rec["diagnosis_confirm_type"] = confirm
            else:
                loaded.note("dx_type", row["dx_type"])
        rec["age_approx"] = _age(row.get("age"), loaded)
        rec["sex"] = _sex(row.get("sex"), loaded)
        if row.get("localization"):
            site = HAM_SITE.get(row["localization"].lower())
            if site is None:
                loaded.note("localization", row["localization"])
            rec["anatom_site_1"] = site
        loaded.records.append({k: v for k, v in rec.items() if v is not None})
    return loaded


def read_isic2020(root: Path) -> Loaded:
    path = _isic2020_csv(root)
    if path is None:
        raise PipelineError(f"data.local: no CSV with image_name and benign_malignant or target in {root}.\n"
                            f"{LAYOUT_HELP}")
    frame = _read_table(path)
    dirs = _image_dirs(root, ["train", "jpeg/train", "ISIC_2020_Training_JPEG/train",
                                          "ISIC_2020_Training_JPEG", "images"])
    loaded = Loaded([], _image_index(dirs), dirs)
    for row in _rows(frame):
        row["isic_id"] = row.pop("image_name", None)
        row.setdefault("attribution", ISIC2020_ATTRIBUTION)
        row.setdefault("copyright_license", ISIC2020_LICENSE)
        row.setdefault("image_type", "dermoscopic")
        loaded.records.append(normalise(row, loaded))
    return loaded


READERS = {"isic-cli": read_isic_cli, "ham10000": read_ham10000, "isic2020": read_isic2020}


# ----------------------------------------------------------------------------------------------------
# normalisation to the archive's current fields


def _age(value, loaded: Loaded):
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
    return int(min(85, 5 * round(age / 5)))


def _sex(value, loaded: Loaded):
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
        rec["age_approx"] = _age(rec["age_approx"], loaded)
    if "sex" in rec:
        rec["sex"] = _sex(rec["sex"], loaded)
    return {k: v for k, v in rec.items() if v is not None}


# ----------------------------------------------------------------------------------------------------
# rows <-> images, limit, output


LABEL_FIELDS = ("diagnosis_1", "diagnosis_2", "diagnosis_3")


def match(loaded: Loaded) -> tuple[list[dict], dict]:
    """Rows that have an image (one row per isic_id); counts of everything that did not match.

    A row whose isic_id or copyright_license could not safely be a file name is skipped with its reason.
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
    kept, no_image, conflicts, duplicates = [], [], [], 0
    for isic_id, rows in by_id.items():
        if len(rows) > 1:
            if len({tuple(r.get(k) for k in LABEL_FIELDS) for r in rows}) > 1:
                conflicts.append(isic_id)
                continue
            duplicates += len(rows) - 1
        if isic_id in loaded.images:
            kept.append(rows[0])
        else:
            no_image.append(isic_id)
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
                    ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())),
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


def _group_key(rec: dict) -> str:
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
