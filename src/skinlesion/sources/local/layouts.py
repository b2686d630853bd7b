"""The three layouts the local source reads: detecting which one a folder is in, and one reader each,
all returning normalised records (records.Loaded).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ...errors import PipelineError
from ...io import NotFollowed, describe_link, link_below, open_regular
from ...raw_layout import IMAGE_SUFFIXES, read_csv
from ...raw_packs import UNPACK_HINT, is_packed
from .records import Loaded, normal_age, normal_sex, normalise
from .vocabulary import (
    HAM_ATTRIBUTION, HAM_DX, HAM_DX_TYPE, HAM_LICENSE, HAM_SITE, ISIC2020_ATTRIBUTION, ISIC2020_LICENSE,
)

LAYOUTS = ("isic-cli", "ham10000", "isic2020")
LAYOUT_HELP = (
    "  isic-cli: metadata.csv with an isic_id column, the images beside it (isic-cli's flat download layout) "
    "or in images/\n"
    "  ham10000: HAM10000_metadata.csv (lesion_id, image_id, dx, ...), images in images/ or "
    "HAM10000_images_part_1/ and HAM10000_images_part_2/\n"
    "  isic2020: a CSV with image_name and benign_malignant or target (ISIC 2020 challenge), images in "
    "train/, jpeg/train/ or images/"
)

_MISSING = {"", "nan", "NaN", "NA", "N/A", "null", "None"}


# What to do about a symbolic link in a dataset folder that the local source needs (a metadata file, an image
# folder): it reads the folder it is given, follows no link out of it (nor any link at all).
LINK_FIX = ("the local source reads only what is inside data.local.path and follows no link: put the file or "
            "folder itself there in place of the link")


def _header(path: Path) -> list[str]:
    """A CSV's column names, for detection; [] for anything that is not a regular file (a link is not read)."""
    try:
        with os.fdopen(open_regular(path, path.parent, LINK_FIX), encoding="utf-8-sig", errors="replace") as fh:
            line = fh.readline()
    except (OSError, NotFollowed):
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
    linked = [p for p in sorted(root.iterdir()) if p.is_symlink() and p.suffix.lower() in (".csv", ".tab", "")]
    if linked:  # a metadata file the detection would have read, had it been a file
        raise PipelineError(f"data.local: {describe_link(linked[0])}: {LINK_FIX}.")
    seen = ", ".join(sorted(p.name for p in root.iterdir())[:12]) or "(empty)"
    raise PipelineError(
        f"data.local: cannot tell the layout of {root} (it holds: {seen}). The local source reads:\n"
        f"{LAYOUT_HELP}\nPoint data.local.path at such a folder, or set data.local.layout explicitly.")


def _read_table(root: Path, path: Path) -> pd.DataFrame:
    """The metadata file below root, opened without following a link (refused, one line, if it is one)."""
    with os.fdopen(open_regular(path, root, LINK_FIX), "rb") as fh:
        sep = "\t" if b"\t" in fh.readline() else ","
        fh.seek(0)
        frame = read_csv(path, "repair or re-export it as UTF-8 CSV (data.local.path)", dtype=str,
                         keep_default_na=False, sep=sep, encoding="utf-8-sig", source=fh)
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


def _loaded(root: Path, dirs: list[Path]) -> Loaded:
    """An empty Loaded with the image index of dirs: regular files only (lstat, no link followed); an image
    that is a symbolic link is noted in linked_images and links, and skipped."""
    loaded = Loaded([], {}, dirs, root=root)
    for folder in dirs:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                p = Path(entry.path)
                if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
                    continue
                if entry.is_symlink():
                    loaded.links.append(p)
                    loaded.linked_images.setdefault(p.stem, p)
                elif entry.is_file(follow_symlinks=False) and p.stem not in loaded.images:
                    loaded.images[p.stem] = p  # Kaggle's copy ships each HAM folder twice; first one wins
    for stem in set(loaded.linked_images) & set(loaded.images):  # the regular file is used; the link is not
        del loaded.linked_images[stem]
    return loaded


def _image_dirs(root: Path, candidates: list[str]) -> list[Path]:
    """The candidate image folders that exist (matched case-insensitively), else the root itself."""
    found = []
    for name in candidates:
        p = root
        for part in name.split("/"):
            p = _child(p, part) if p is not None and p.is_dir() else None
        if p is not None and p.is_dir():
            link = link_below(root, p)
            if link is not None:
                raise PipelineError(f"data.local: {describe_link(link)}: {LINK_FIX}.")
            found.append(p)
    return found or [root]


def read_isic_cli(root: Path) -> Loaded:
    path = root / "metadata.csv"
    if not path.is_file():
        raise PipelineError(f"data.local: {path} not found; the isic-cli layout needs metadata.csv.\n{LAYOUT_HELP}")
    frame = _read_table(root, path)
    if "isic_id" not in frame.columns:
        raise PipelineError(f"data.local: {path} has no isic_id column, so it is not in isic-cli's layout.\n"
                            f"{LAYOUT_HELP}")
    if is_packed(root) and not (root / "images").is_dir():
        raise PipelineError(f"data.local: {root} has no images/: {UNPACK_HINT}, and point data.local.path at DEST.")
    dirs = _image_dirs(root, ["images"])
    loaded = _loaded(root, dirs)
    for row in _rows(frame):
        loaded.records.append(normalise(row, loaded))
    attribution = root / "attribution.txt"
    licenses = root / "licenses"
    for p in (attribution, licenses):
        if p.is_symlink():  # not followed: attribution.txt is then written from the rows, licenses/ from the names
            loaded.links.append(p)
    loaded.attribution_file = attribution if attribution.is_file() and not attribution.is_symlink() else None
    loaded.licenses_dir = licenses if licenses.is_dir() and not licenses.is_symlink() else None
    return loaded


def read_ham10000(root: Path) -> Loaded:
    path = _ham_metadata(root)
    if path is None:
        raise PipelineError(f"data.local: no HAM10000_metadata.csv in {root}.\n{LAYOUT_HELP}")
    frame = _read_table(root, path)
    missing = {"image_id", "dx"} - set(frame.columns)
    if missing:
        raise PipelineError(f"data.local: {path} lacks column(s) {sorted(missing)}; HAM10000's metadata has "
                            "lesion_id, image_id, dx, dx_type, age, sex, localization.")
    dirs = _image_dirs(root, ["images", "HAM10000_images_part_1", "HAM10000_images_part_2",
                                          "HAM10000_images"])
    loaded = _loaded(root, dirs)
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
        rec["age_approx"] = normal_age(row.get("age"), loaded)
        rec["sex"] = normal_sex(row.get("sex"), loaded)
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
    frame = _read_table(root, path)
    dirs = _image_dirs(root, ["train", "jpeg/train", "ISIC_2020_Training_JPEG/train",
                                          "ISIC_2020_Training_JPEG", "images"])
    loaded = _loaded(root, dirs)
    for row in _rows(frame):
        row["isic_id"] = row.pop("image_name", None)
        row.setdefault("attribution", ISIC2020_ATTRIBUTION)
        row.setdefault("copyright_license", ISIC2020_LICENSE)
        row.setdefault("image_type", "dermoscopic")
        loaded.records.append(normalise(row, loaded))
    return loaded


READERS = {"isic-cli": read_isic_cli, "ham10000": read_ham10000, "isic2020": read_isic2020}
