"""The raw layout every source writes (isic-cli's download layout), and how later stages read it.

    images/<isic_id>.jpg            (.png where the archive has a PNG)
    metadata.csv                    isic_id, attribution, copyright_license, then the sorted union of
                                    every other field, flattened without prefixes; empty cell = missing
    attribution.txt                 every distinct attribution, one per line
    licenses/<license>.txt          the license texts of the licenses in use
    source.json                     how this folder was made (source and options): our addition

The fetch stage then packs images/ into packs/*.tar + manifest.csv (skinlesion.raw_packs: DVC tracks a
hundred packs, not 100k files); `skinlesion unpack` (or `tar -xf` of the packs elsewhere) gives images/ back. Readers
take either form (image_files). Nothing after the fetch stage knows which source wrote the folder.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:  # pandas only where a CSV is read: `skinlesion download` writes these files without it
    import pandas as pd

from .errors import PipelineError
from .raw_packs import ImageRef, image_refs

FIRST_COLUMNS = ["isic_id", "attribution", "copyright_license"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Names that come from outside (a server, a dataset folder) and become file names. Every source accepts an
# image id only if it matches ISIC_ID whole (archive ids are ISIC_ + 7 digits; HAM10000 and the 2020 CSV use
# the same; other local copies may use other letters, digits, _ and -): no dot, slash, NUL, newline or space,
# at most 64 characters. A license becomes licenses/<slug>.txt only if it is such a slug.
ISIC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
LICENSE_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")

LICENSE_TEXTS = {
    "CC-0": "CC0 1.0 Universal (public domain dedication). https://creativecommons.org/publicdomain/zero/1.0/\n",
    "CC-BY": "Creative Commons Attribution 4.0 International. https://creativecommons.org/licenses/by/4.0/\n",
    "CC-BY-NC": "Creative Commons Attribution-NonCommercial 4.0 International. "
    "https://creativecommons.org/licenses/by-nc/4.0/\n",
}


def id_problem(value) -> str | None:
    """Why `value` cannot be an image id (None when it can): the one rule every source applies."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return "missing isic_id"
    if not isinstance(value, str) or not ISIC_ID.fullmatch(value):
        return "bad isic_id"
    return None


def license_problem(value) -> str | None:
    """Why `value` cannot be a copyright_license (None when it can, or when there is none)."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str) or not LICENSE_SLUG.fullmatch(value) or ".." in value:
        return "bad copyright_license"
    return None


def record_problem(record: Mapping) -> str | None:
    """The reason a flat record is skipped (bad isic_id, bad copyright_license), or None."""
    return id_problem(record.get("isic_id")) or license_problem(record.get("copyright_license"))


def license_file_name(name: str) -> str | None:
    """licenses/<name>.txt for a license slug; None for anything else (it is then not written)."""
    return f"{name}.txt" if license_problem(name) is None and name else None


def metadata_columns(records: Iterable[Mapping]) -> list[str]:
    """isic-cli's column order: the three fixed columns, then the sorted union of all other keys."""
    seen: set[str] = set()
    for record in records:
        seen.update(record)
    return FIRST_COLUMNS + sorted(seen - set(FIRST_COLUMNS))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def write_metadata_csv(records: list[Mapping], path: str | os.PathLike) -> None:
    """Write flat records (one dict per image) as isic-cli's metadata.csv; missing keys stay empty."""
    from .io import atomic_path

    columns = metadata_columns(records)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for record in records:
            writer.writerow([_cell(record.get(c)) for c in columns])


def attribution_text(records: Iterable[Mapping]) -> str:
    """attribution.txt as isic-cli writes it: each distinct attribution once, the one with most images first
    (ties by name), "Anonymous" last, separated by one blank line, no newline at the end."""
    counts = Counter(str(r["attribution"]) for r in records if r.get("attribution"))
    return "\n\n".join(sorted(counts, key=lambda name: (name == "Anonymous", -counts[name], name)))


def write_attribution(records: Iterable[Mapping], path: str | os.PathLike) -> None:
    from .io import write_text

    write_text(path, attribution_text(records))


def write_licenses(licenses: Iterable[str], folder: str | os.PathLike, texts: Mapping[str, str] | None = None) -> None:
    """Write licenses/<name>.txt for each license in use; `texts` overrides the built-in summaries.

    Every name must be a license slug (license_problem); the files land inside `folder` or not at all."""
    from .io import write_text

    texts = {**LICENSE_TEXTS, **(texts or {})}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(set(licenses)):
        file_name = license_file_name(name)
        if file_name is None:  # the sources skip such records; never a path from outside
            raise PipelineError(f"refusing to write a license file for {name!r}: not a license name")
        write_text(folder / file_name, texts.get(name, f"{name}\n"), within=folder)


def read_metadata(raw_dir: str | os.PathLike) -> pd.DataFrame:
    """metadata.csv as strings (typing is the metadata stage's job), one row per isic_id."""
    path = Path(raw_dir) / "metadata.csv"
    if not path.exists():
        raise PipelineError(f"{path} not found: the fetch stage writes it (skinlesion fetch).")
    frame = read_csv(path, "fetch it again (skinlesion fetch) or repair it", dtype=str, keep_default_na=False,
                     na_values=[""])
    missing = [c for c in FIRST_COLUMNS[:1] if c not in frame.columns]
    if missing:
        raise PipelineError(f"{path} has no '{missing[0]}' column; is it in isic-cli's layout?")
    return frame


def read_csv(path: Path, fix: str, source=None, **kwargs) -> pd.DataFrame:
    """pd.read_csv, with a damaged file (bad UTF-8, nothing in it, an unclosed quote) as one PipelineError line
    naming the file and `fix`. `source`: the file already open (read from it; `path` names it)."""
    import pandas as pd

    try:
        return pd.read_csv(path if source is None else source, **kwargs)
    except ValueError as exc:  # UnicodeDecodeError, EmptyDataError and ParserError are all ValueErrors
        reason = " ".join(str(exc).split())[:200]
        raise PipelineError(f"cannot read {path} as CSV ({type(exc).__name__}: {reason}): {fix}.") from None


def image_files(raw_dir: str | os.PathLike) -> dict[str, ImageRef]:
    """isic_id -> where its image is (any of the usual suffixes), packed or under raw_dir/images."""
    return {ref.stem: ref for ref in image_refs(raw_dir, IMAGE_SUFFIXES)}
