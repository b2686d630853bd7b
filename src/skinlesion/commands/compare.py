"""Compare evaluated variants into results/all (table, ROC curves of all, HTML report)."""

from __future__ import annotations

from . import add_params_argument


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("results", nargs="*", help="results/variants/<variant> folders (default: every variant in params)")
    parser.add_argument("--out", default="results/all")


def run(args):
    from .. import compare
    from .. import params as P

    params = P.load(args.params)
    compare.run(args.results or [f"results/variants/{v}" for v in params["variants"]], args.out)
