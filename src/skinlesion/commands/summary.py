"""Print what the last run produced: variants, the highest test ROC AUC, random-weights warnings, the report."""

from __future__ import annotations


def configure(parser):
    parser.add_argument("--results", default="results/all", help="the compare stage's folder (default: results/all)")


def run(args):
    import sys

    from .. import summary

    summary.print_summary(args.results, stream=sys.stdout)
