"""Write data/raw (isic-cli layout) from the source that params.yaml selects: synthetic, local or isic."""

from __future__ import annotations

from . import add_params_argument, stage_params


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("--out", default="data/raw", help="raw folder to write (default: data/raw)")


def run(args):
    from ..sources import fetch

    fetch(stage_params(args, "fetch"), args.out)
