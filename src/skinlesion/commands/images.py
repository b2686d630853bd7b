"""Decode every image once, resize to images.size, and write shards + index to data/processed/shards."""

from __future__ import annotations

from . import add_params_argument, stage_params


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("--table", default="data/interim/metadata.parquet")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/processed/shards")


def run(args):
    from .. import images

    images.run(args.table, args.raw, args.out, stage_params(args, "images"))
