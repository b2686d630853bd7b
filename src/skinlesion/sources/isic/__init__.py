"""The ISIC Archive source: `fetch(cfg, out, seed)` downloads the data.isic selection into `out`.

It shares everything with `skinlesion download` (see download.py). To survive interruptions the images go
first into a staging folder beside the raw folder, `.isic-download/<selection key>/` (or data.isic.cache_dir),
keyed by the selection so a changed query never mixes files; a rerun after a failure or Ctrl-C continues
there. Once complete, the files are hard-linked (or copied) into `out`, and the staging folder is removed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .download import Outcome
from .download import download as run_download
from .options import from_config

log = logging.getLogger(__name__)

STAGING_NAME = ".isic-download"


def staging_root(out: Path, cfg: dict) -> Path:
    if cfg.get("cache_dir"):
        return Path(cfg["cache_dir"])
    parent = out.parent
    # skinlesion.io.atomic_path hands sources `<parent>/.<name>.XXXX.tmp/<name>`, removed afterwards:
    # stage beside the real target instead, so an interrupted fetch can be continued.
    if parent.name.startswith(f".{out.name}.") and parent.name.endswith(".tmp"):
        parent = parent.parent
    return parent / STAGING_NAME


def fetch(cfg: dict, out: Path, seed: int) -> dict:
    """Fill `out` (which does not exist yet) with the raw layout; `seed` is unused (the selection is the archive's order)."""
    options = from_config(cfg)
    staging = staging_root(Path(out), cfg) / options.selection_key()
    outcome = run_download(options, staging, rerun="Run `skinlesion fetch` again")
    linked = materialise(staging, Path(out), outcome)
    log.info("%s (%s into %s)", outcome.line, "hard-linked" if linked else "copied", out)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # only if no other (interrupted) selection is staged there
    except OSError:
        pass
    return outcome.summary


def materialise(staging: Path, out: Path, outcome: Outcome) -> bool:
    """Hard-link (else copy) the selected images and the small files into `out`; True if all were linked."""
    (out / "images").mkdir(parents=True)
    (out / "licenses").mkdir()
    linked = True
    pairs = [(r.job.dest, out / "images" / r.job.dest.name) for r in outcome.report.results]
    pairs += [(staging / name, out / name) for name in ("metadata.csv", "attribution.txt")]
    pairs += [(p, out / "licenses" / p.name) for p in sorted((staging / "licenses").glob("*.txt"))]
    for source, target in pairs:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
            linked = False
    return linked
