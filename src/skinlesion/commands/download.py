"""Download images and metadata from the ISIC Archive (API v2) into isic-cli's flat layout, resumably.

    skinlesion download --out data/isic2020 --collections 70
    skinlesion download --out data/balanced --max-per-class benign=5000,malignant=5000
    skinlesion download --out data/thumbs --query 'diagnosis_1:Malignant' --thumbnails --limit 500
    skinlesion download --out data/isic2020 --collections 70 --dry-run
    skinlesion download -c 70 -l 100 data/isic2020_100      (isic-cli's spellings: isic image download ...)

The selection is made on metadata alone; each search page's files start as it arrives. Files are written
under hidden .part names and renamed when complete, so an interrupted run (Ctrl-C, kill, network loss) is
simply run again: only what is missing is fetched, partial files are continued with HTTP Range requests.
A file host other than the archive's stops the run at once, naming it (--allowed-hosts allows it); records
refused as unusable make the run exit 2 with their counts once the rest is complete (--allow-skipped).
ISIC_API_URL in the environment overrides the API URL. isic-cli's own flags are accepted as they are
(-s/--search, -c/--collections, -l/--limit with 0 for all, the folder as a last argument). See docs/isic.md.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # isic-cli's spellings beside ours (isic_cli/cli/image.py: -s/--search, -c/--collections, -l/--limit, OUTDIR)
    parser.add_argument("outdir", nargs="?", metavar="DIR", help="the folder, as isic-cli takes it (or --out)")
    parser.add_argument("--out", metavar="DIR", help="folder to download into (created; reruns continue it)")
    parser.add_argument("--query", "-s", "--search", dest="query",
                        help='search query, e.g. "diagnosis_1:Malignant AND sex:female"')
    parser.add_argument("--collections", "-c", metavar="C[,C]", help="collection ids, e.g. 70 (2020 challenge training)")
    parser.add_argument("--limit", "-l", type=int, metavar="N", help="at most N images in all (0: all, as in isic-cli)")
    parser.add_argument(
        "--max-per-class", metavar="benign=N,malignant=M",
        help="up to N images of each listed diagnosis_1 class (benign, malignant, indeterminate); others left out",
    )
    parser.add_argument("--thumbnails", action="store_true", default=None, help="fetch the 256 px thumbnails instead of full files")
    parser.add_argument("--workers", type=int, metavar="N", help="parallel downloads (default 32)")
    parser.add_argument("--retries", type=int, metavar="N", help="retries per request before giving up (default 10)")
    parser.add_argument("--backoff", type=float, metavar="S", help="first retry delay in seconds, doubling (default 1)")
    parser.add_argument("--connect-timeout", type=float, metavar="S", help="connect timeout (default 3.05 s)")
    parser.add_argument("--read-timeout", type=float, metavar="S", help="read timeout (default 15 s)")
    parser.add_argument("--api-url", metavar="URL", help="API base URL (default https://api.isic-archive.com/api/v2; ISIC_API_URL wins)")
    parser.add_argument("--allowed-hosts", metavar="HOST[,HOST]",
                        help="file hosts to allow besides the archive's own (CloudFront, its S3 bucket) and the API's")
    parser.add_argument("--allow-skipped", action="store_true", default=None,
                        help="succeed even when records were refused as unusable (default: exit 2 with the counts)")
    parser.add_argument("--params", metavar="FILE", help="take defaults from data.isic of this params file (flags win)")
    parser.add_argument("--dry-run", action="store_true", help="print how many images and bytes would be fetched, then stop")


FLAGS = {
    "query": "query", "collections": "collections", "limit": "limit", "max_per_class": "max_per_class",
    "thumbnails": "thumbnails", "workers": "workers", "retries": "retries", "backoff": "backoff",
    "connect_timeout": "connect_timeout", "read_timeout": "read_timeout", "api_url": "api_url",
    "allowed_hosts": "allowed_hosts", "allow_skipped": "allow_skipped",
}


def config_from_args(args: argparse.Namespace) -> dict:
    cfg: dict = {}
    if args.params:
        from .. import params as P

        cfg.update((P.load(args.params)["data"].get("isic") or {}))
    for attr, key in FLAGS.items():
        value = getattr(args, attr, None)
        if value is not None:
            cfg[key] = value
    if cfg.get("limit") == 0:  # isic-cli's "no limit"
        cfg["limit"] = None
    return cfg


def out_dir(args: argparse.Namespace) -> str:
    """The folder, given as --out or, as isic-cli takes it, as the last argument (not both, unless equal)."""
    from ..errors import PipelineError

    if args.out and args.outdir and args.out != args.outdir:
        raise PipelineError(f"two folders given: --out {args.out} and {args.outdir}; give one")
    folder = args.out or args.outdir
    if not folder:
        raise PipelineError("no folder given: skinlesion download --out DIR ... (or DIR last, as isic-cli takes it)")
    return folder


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io import write_json
    from ..sources.isic.download import disk_margin, download, dry_run, free_bytes, human
    from ..sources.isic.options import from_config

    out = Path(out_dir(args))
    cfg = config_from_args(args)
    options = from_config(cfg)
    if args.dry_run:
        plan = dry_run(options, out)
        kind = "thumbnails" if options.thumbnails else "full files"
        print(f"dry run: {plan['images']} images, {plan['bytes']} bytes ({human(plan['bytes'])}) of {kind} "
              f"would be fetched from {options.api_url}")
        if plan.get("per_class"):
            print("  per class: " + ", ".join(f"{k} {v}" for k, v in plan["per_class"].items()))
        needed = plan.get("bytes_to_fetch", plan["bytes"])
        if "bytes_to_fetch" in plan:
            print(f"  still to fetch into {out}: {needed} bytes ({human(needed)})")
        free = free_bytes(out)
        enough = needed + disk_margin(needed) <= free
        print(f"  free disk space at {out}: {human(free)} ({'enough' if enough else 'NOT enough'})")
        return 0
    outcome = download(options, out, rerun=f"Run the same `skinlesion download --out {out} ...` again")
    summary = outcome.summary
    write_json(out / "source.json", {"source": "isic", "options": cfg, "images": summary["selected"], **summary})
    print(outcome.line)
    return 0
