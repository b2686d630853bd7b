"""CLI subcommands: each module has `configure(parser)` and `run(args)` and nothing else; the stage logic
lives in the module named for what it does (README, Layout), given only its own params section (stage_params)."""

from __future__ import annotations

import argparse


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")


def stage_params(args: argparse.Namespace, stage: str, **wildcards) -> dict:
    """The params file's section that `stage` declares (skinlesion.stages.STAGE_PARAMS), validated whole."""
    from .. import params as P
    from ..stages import section

    return section(P.load(args.params), stage, **wildcards)


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """The variant and the two data inputs every per-variant stage (train, evaluate) reads."""
    add_params_argument(parser)
    parser.add_argument("variant", help="variant name from params.yaml")
    parser.add_argument("--table", default="data/interim/metadata.parquet", help="metadata table (Parquet)")
    parser.add_argument("--shards", default="data/processed/shards", help="image shards folder")
