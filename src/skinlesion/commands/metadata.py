"""Clean, label, split and impute data/raw/metadata.csv into data/interim/metadata.parquet.

Writes <out>_summary.json beside the table with every dropped row counted by reason.
"""

from __future__ import annotations

from . import add_params_argument, stage_params


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("--raw", default="data/raw", help="raw folder (default: data/raw)")
    parser.add_argument("--out", default="data/interim/metadata.parquet")


def run(args):
    from .. import metadata

    metadata.run(args.raw, args.out, stage_params(args, "metadata"))
