"""CLI subcommands: each module has `configure(parser)` and `run(args)`; stage logic lives elsewhere."""

from __future__ import annotations

import argparse


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
