"""CLI subcommands: each module has `configure(parser)` and `run(args)`; stage logic lives elsewhere."""

from __future__ import annotations

import argparse


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """The variant and the two data inputs every per-variant stage (train, evaluate) reads."""
    add_params_argument(parser)
    parser.add_argument("variant", help="variant name from params.yaml")
    parser.add_argument("--table", default="data/interim/metadata.parquet", help="metadata table (Parquet)")
    parser.add_argument("--shards", default="data/processed/shards", help="image shards folder")
