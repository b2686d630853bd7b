"""Train one variant (a name under `variants:` in params.yaml) into models/<variant>/."""

from __future__ import annotations

from . import add_variant_arguments, stage_params


def configure(parser):
    add_variant_arguments(parser)
    parser.add_argument("--out", help="model folder (default: models/<variant>)")
    parser.add_argument("--metadata-summary",
                        help="the metadata stage's summary: the train means and data source the bundle records "
                             "(default: beside --table, data/interim/metadata_summary.json)")


def run(args):
    from .. import training

    training.run(stage_params(args, "train", variant=args.variant), args.variant, args.table, args.shards, args.out or f"models/{args.variant}",
                 summary_path=args.metadata_summary)
