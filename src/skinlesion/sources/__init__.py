"""Data sources. Each writes the same raw layout (see skinlesion.raw_layout) into a fresh folder.

A source is a module with `fetch(cfg: dict, out: pathlib.Path, seed: int) -> dict`: it fills `out`
(which does not exist yet) with images/, metadata.csv, attribution.txt and licenses/, and returns
a JSON-able summary (counts, options) that is recorded in out/source.json. The fetch stage then packs
images/ (skinlesion.raw_packs), whatever the source.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

from ..errors import PipelineError
from ..io import atomic_path, write_json
from ..raw_layout import IMAGE_SUFFIXES, id_problem
from ..raw_packs import pack

log = logging.getLogger(__name__)

SOURCES = {
    "synthetic": "skinlesion.sources.synthetic",
    "local": "skinlesion.sources.local",
    "isic": "skinlesion.sources.isic",
}


def fetch(params: dict, out: str | os.PathLike) -> dict:
    """Run the source that params select into `out`, atomically: a failed fetch leaves no folder."""
    name = params["data"]["source"]
    if name not in SOURCES:
        raise PipelineError(f"unknown data.source '{name}'. Allowed: {', '.join(SOURCES)}.")
    module = importlib.import_module(SOURCES[name])
    cfg = dict(params["data"].get(name) or {})
    started = time.time()
    with atomic_path(out, mark="source.json") as tmp:
        summary = module.fetch(cfg, Path(tmp), seed=params["seed"]) or {}
        names = [p.name for p in (Path(tmp) / "images").iterdir()]
        bad = [n for n in names if id_problem(Path(n).stem) or Path(n).suffix.lower() not in IMAGE_SUFFIXES]
        if bad:  # every source checks its ids; this is the last look before the folder is committed
            raise PipelineError(f"the {name} source wrote image names outside the isic_id pattern "
                                f"(e.g. {bad[0][:80]!r}); nothing was kept.")
        n_images = pack(tmp)
        write_json(Path(tmp) / "source.json", {"source": name, "options": cfg, "images": n_images, **summary})
    log.info("fetch: %s source wrote %d images to %s (packed) in %.1f s", name, n_images, out, time.time() - started)
    return summary
