"""Train one variant (a name under `variants:` in params.yaml) into models/<variant>/."""

from __future__ import annotations

from . import add_variant_arguments


def configure(parser):
    add_variant_arguments(parser)
    parser.add_argument("--out", help="model folder (default: models/<variant>)")
    parser.add_argument("--metadata-summary",
                        help="the metadata stage's summary: the train means and data source the bundle records "
                             "(default: beside --table, data/interim/metadata_summary.json)")


def run(args):
    from .. import params as P
    from .. import training

    training.run(P.load(args.params), args.variant, args.table, args.shards, args.out or f"models/{args.variant}",
                 summary_path=args.metadata_summary)
