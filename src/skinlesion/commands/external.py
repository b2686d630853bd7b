"""Prepare the external test sets of evaluate.external into data/external/<name>/ (labelled table + shards).

Each set is read, labelled, cleaned and resized by the same code as the training data; missing values are
filled with the internal train split's means (from --metadata-summary), never with the set's own. With
evaluate.external empty, writes a manifest with no sets. See docs/evaluation.md (External test sets).
"""

from __future__ import annotations

from . import add_params_argument, stage_params


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("--metadata-summary", default="data/interim/metadata_summary.json",
                        help="the internal metadata stage's summary: its train means fill missing values")
    parser.add_argument("--out", default="data/external")


def run(args):
    from .. import external

    external.run(stage_params(args, "external"), args.out, args.metadata_summary)
