"""Evaluate a trained variant: metrics.json (headline), evaluation.json (all), DVC plot data and figures in results/variants/<variant>/.

The threshold (and, with evaluate.calibration: temperature, the calibration) is fitted on the validation
split; test metrics carry 95% intervals from a bootstrap over patients / lesions. Every external set of
evaluate.external (prepared by skinlesion external) is scored the same way, with its threshold transfer.
See docs/evaluation.md.
"""

from __future__ import annotations

from . import add_variant_arguments, stage_params


def configure(parser):
    add_variant_arguments(parser)
    parser.add_argument("--model", help="model folder (default: models/<variant>)")
    parser.add_argument("--out", help="results folder (default: results/variants/<variant>)")
    parser.add_argument("--bundle", help="where to write the complete model bundle, with the threshold and calibration "
                                         "chosen on validation (default: bundles/<variant> beside the models/ "
                                         "folder of --model)")
    parser.add_argument("--external", default="data/external",
                        help="the external stage's folder: each set of evaluate.external is scored too "
                             "(default: data/external; not read when evaluate.external is empty)")


def run(args):
    from .. import evaluation

    evaluation.run(stage_params(args, "evaluate"), args.variant, args.model or f"models/{args.variant}",
                   args.table, args.shards, args.out or f"results/variants/{args.variant}",
                   external_dir=args.external, bundle_out=args.bundle)
