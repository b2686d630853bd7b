"""Write a raw folder in isic-cli's flat layout (<isic_id>.jpg beside metadata.csv), for tools that want it.

    skinlesion unpack data/raw data/raw-unpacked

The fetch stage packs data/raw's images into packs/*.tar with a manifest.csv (DVC then tracks a hundred
files, not one per image). This writes DEST as `isic image download DEST` would: the images at the top
(DEST/<isic_id>.jpg), each checked against the manifest's sha256, with metadata.csv, attribution.txt,
licenses/ and source.json beside them, and unpacked.json (where it came from). isic-cli, `skinlesion
download` and the local source (data.local.path) all read and continue such a folder.

DEST is written atomically, never inside RAW; an existing DEST is replaced only when an earlier unpack
wrote it (it holds unpacked.json). `tar -xf` of each pack in DEST gives the same images under images/ (the
sub-folder variant the local source reads too), unchecked (never extract inside data/raw: a DVC output).

RAW is read, not followed: a symbolic link anywhere in it (a pack, packs/, licenses/, metadata.csv) is
refused in one line before DEST is written, and images are streamed to DEST in blocks, never held whole.
A data/raw that DVC checked out as links (cache.type symlink) is refused too: `dvc config cache.type copy`,
then `dvc checkout --relink`.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("raw", metavar="RAW", help="a raw folder the fetch stage wrote (e.g. data/raw)")
    parser.add_argument("dest", metavar="DEST", help="folder to write in isic-cli's flat layout")


def run(args) -> None:
    import logging

    from ..raw_layout import IMAGE_SUFFIXES
    from ..raw_packs import unpack

    n = unpack(args.raw, args.dest, IMAGE_SUFFIXES)
    logging.getLogger(__name__).info("unpack: %d images of %s written to %s", n, args.raw, args.dest)
