"""Compare evaluated variants into results/all: metrics.csv, roc.png and index.html, a self-contained report.

The report also shows the dataset (from --metadata-summary and --raw, where present), the params file
and the code version (skinlesion version, git commit).
"""

from __future__ import annotations

from . import add_params_argument, stage_params


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("results", nargs="*", help="results/variants/<variant> folders (default: every variant in params)")
    parser.add_argument("--out", default="results/all")
    parser.add_argument("--raw", default="data/raw",
                        help="raw folder for source.json, attribution.txt, licenses/ (default: data/raw; may be absent)")
    parser.add_argument("--metadata-summary", default="data/interim/metadata_summary.json",
                        help="the metadata stage's summary (default: data/interim/metadata_summary.json; may be absent)")


def run(args):
    from .. import compare

    params = stage_params(args, "compare")
    compare.run(args.results or [f"results/variants/{v}" for v in params["variants"]], args.out,
                params_path=args.params, raw_dir=args.raw, summary_path=args.metadata_summary)
