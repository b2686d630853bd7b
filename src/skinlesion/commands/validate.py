"""Check a params file against the schema; prints the first problem with its key, or 'ok'."""

from __future__ import annotations

from . import add_params_argument


def configure(parser):
    add_params_argument(parser)


def run(args):
    from .. import params as P

    params = P.load(args.params)
    print(f"{args.params}: ok ({len(params['variants'])} variants: {', '.join(params['variants'])})")
