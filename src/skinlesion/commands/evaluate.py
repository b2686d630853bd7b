"""Evaluate a trained variant: metrics.json (headline), evaluation.json (all), DVC plot data and figures in results/variants/<variant>/.

The threshold (and, with evaluate.calibration: temperature, the calibration) is fitted on the validation
split; test metrics carry 95% intervals from a bootstrap over patients / lesions. See docs/evaluation.md.
"""

from __future__ import annotations

from . import add_variant_arguments


def configure(parser):
    add_variant_arguments(parser)
    parser.add_argument("--model", help="model folder (default: models/<variant>)")
    parser.add_argument("--out", help="results folder (default: results/variants/<variant>)")


def run(args):
    from .. import evaluation
    from .. import params as P

    evaluation.run(P.load(args.params), args.variant, args.model or f"models/{args.variant}",
                   args.table, args.shards, args.out or f"results/variants/{args.variant}")
