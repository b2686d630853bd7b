"""The raw layout from matched records: images hard-linked (copied where linking fails) to
images/<isic_id>.<ext>, metadata.csv, attribution.txt and licenses/. The dataset folder is only ever read,
and only its regular files: no symbolic link is followed (io.open_regular), none is copied.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ...errors import PipelineError
from ...io import COPY_BLOCK, open_regular
from ...raw_layout import LICENSE_TEXTS, license_problem, write_attribution, write_licenses, write_metadata_csv
from .layouts import LINK_FIX
from .records import Loaded

log = logging.getLogger("skinlesion.sources.local")

MAX_LICENSE_CHARS = 1_000_000  # of a license file carried over from the dataset folder


def _place(root: Path, src: Path, dst: Path) -> str:
    """src, a regular file below root reached without a link, hard-linked (else copied) to dst. The file is
    opened first (io.open_regular: no link followed, a regular file); the hard link is then checked to be that
    very file (same inode), so a file swapped for a link meanwhile is refused, never carried in."""
    fd = open_regular(src, root, LINK_FIX)
    with os.fdopen(fd, "rb") as fh:
        opened = os.fstat(fh.fileno())
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            with open(dst, "xb") as out:
                shutil.copyfileobj(fh, out, COPY_BLOCK)
            return "copied"
        placed = os.lstat(dst)
        if (placed.st_dev, placed.st_ino) != (opened.st_dev, opened.st_ino):
            os.unlink(dst)
            raise PipelineError(f"data.local: {src} changed while it was read (it is not the file that was "
                                "opened); run the fetch again once the folder is left alone.")
        return "linked"


def _copy(root: Path, src: Path, dst: Path) -> None:
    """src's bytes (a regular file below root, no link followed) to dst, in blocks."""
    with os.fdopen(open_regular(src, root, LINK_FIX), "rb") as fh, open(dst, "xb") as out:
        shutil.copyfileobj(fh, out, COPY_BLOCK)


def _read_text(root: Path, path: Path) -> str:
    with os.fdopen(open_regular(path, root, LINK_FIX), encoding="utf-8", errors="replace") as fh:
        return fh.read(MAX_LICENSE_CHARS)


def write(records: list[dict], loaded: Loaded, out: Path) -> None:
    root = loaded.root
    images = out / "images"
    images.mkdir(parents=True)
    how = {"linked": 0, "copied": 0}
    for rec in records:
        src = loaded.images[rec["isic_id"]]
        ext = src.suffix.lower()
        ext = ".jpg" if ext == ".jpeg" else ext
        how[_place(root, src, images / f"{rec['isic_id']}{ext}")] += 1
    log.info("local: %d image(s) hard-linked, %d copied", how["linked"], how["copied"])
    write_metadata_csv(records, out / "metadata.csv")
    if loaded.attribution_file is not None:
        _copy(root, loaded.attribution_file, out / "attribution.txt")
    else:
        write_attribution(records, out / "attribution.txt")
    texts = {}
    if loaded.licenses_dir is not None:
        with os.scandir(loaded.licenses_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                p = Path(entry.path)
                if p.suffix != ".txt" or license_problem(p.stem) is not None:
                    continue  # a name that is a license slug, nothing else
                if entry.is_symlink():
                    loaded.links.append(p)  # not followed: the license's built-in text (or its name) is written
                elif entry.is_file(follow_symlinks=False):
                    texts[p.stem] = _read_text(root, p)
    in_use = {r["copyright_license"] for r in records if r.get("copyright_license")}
    write_licenses(sorted(in_use | set(texts)), out / "licenses", texts={**LICENSE_TEXTS, **texts})
