"""The images stage: decode every source image once, resize to SxS RGB, write fixed-size shards.

    data/processed/shards/shard-00000.npy ...   uint8 arrays (n, S, S, 3), `shard_size` images each
    data/processed/shards/index.parquet         isic_id, shard, row, split, label, label_multiclass, group
    data/processed/shards/unreadable.csv        images that could not be decoded (excluded, with the error)
    data/processed/shards/summary.json

Images are untrusted: one whose header states more than images.max_pixels pixels is not decoded (a few
bytes can announce gigapixels) and is quarantined in unreadable.csv with its reason, like any image the
decoder rejects.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .errors import PipelineError
from .io import atomic_path, write_json

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["isic_id", "split", "label", "label_multiclass", "group"]
DEFAULT_MAX_PIXELS = 40_000_000  # images.max_pixels: 6000 x 4000 archive images fit with room to spare


class TooManyPixels(ValueError):
    pass


def load_image(path: str | os.PathLike, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image -> (size, size, 3) uint8. JPEGs are decoded at a reduced scale when that suffices.

    Raises TooManyPixels, before decoding, for an image of more than `max_pixels` pixels."""
    # Pillow's own bomb check (a warning, then an error at twice its limit) must not undercut ours
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    with Image.open(path) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise TooManyPixels(f"{width}x{height} = {width * height} pixels, over images.max_pixels ({max_pixels}); "
                                "not decoded")
        # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale: far cheaper than a full decode of a
        # 6000x4000 file; it never goes below the requested size, so quality is kept.
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image, dtype=np.uint8)


def _load(task: tuple[str, int, int]) -> tuple[np.ndarray | None, str | None]:
    path, size, max_pixels = task
    try:
        return load_image(path, size, max_pixels), None
    except Exception as exc:  # any decoder error: the image is reported, not fatal
        return None, f"{type(exc).__name__}: {exc}"


# Environment variables that carry the threads a runner gave the job, first found wins:
# SKINLESION_THREADS (set it by hand, e.g. in a DVC run), then OMP_NUM_THREADS, which Snakemake sets to
# the rule's `threads:` for every shell job (so a profile's set-threads reaches the stage).
THREAD_VARIABLES = ("SKINLESION_THREADS", "OMP_NUM_THREADS")


def workers_for(cfg: dict, n_tasks: int | None = None) -> tuple[int, str]:
    """How many decoding processes to use, and where that number came from.

    The threads the runner gave the job win over images.workers (the default the Snakefile also
    gives the rule as its threads); never more than there are images. The shards do not depend on it:
    results are collected in table order whatever the number of workers."""
    workers, source = int(cfg.get("workers", 1)), "images.workers"
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                workers, source = max(1, int(value)), name
            except ValueError:
                log.warning("images: ignoring %s=%r (not an integer)", name, value)
                continue
            break
    if n_tasks is not None:
        workers = max(1, min(workers, n_tasks))
    return workers, source


def _read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The metadata table's columns this stage needs (no import of the metadata stage's modules)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: the metadata stage writes it (skinlesion metadata).")
    return pd.read_parquet(path, columns=["image", *INDEX_COLUMNS])


def run(table_path: str | os.PathLike, raw_dir: str | os.PathLike, out: str | os.PathLike, params: dict) -> dict:
    cfg = params["images"]
    size, shard_size = cfg["size"], cfg.get("shard_size", 512)
    table = _read_table(table_path)
    paths = [str(Path(raw_dir) / "images" / name) for name in table["image"]]
    max_pixels = cfg.get("max_pixels", DEFAULT_MAX_PIXELS)
    tasks = [(p, size, max_pixels) for p in paths]
    workers, workers_source = workers_for(cfg, len(tasks))
    log.info("images: %d image(s), %d decoding process(es) (from %s)", len(tasks), workers, workers_source)
    # Row values as plain Python lists, one per column: indexing a DataFrame row by row costs ~150 us each.
    columns = {c: table[c].tolist() for c in INDEX_COLUMNS}
    shard_of, row_of = [], []

    index_rows, unreadable, buffer, shard = [], [], [], 0
    with atomic_path(out, mark="index.parquet") as tmp:
        tmp.mkdir(parents=True)

        def flush() -> None:
            nonlocal buffer, shard
            if buffer:
                np.save(tmp / f"shard-{shard:05d}.npy", np.stack(buffer))
                buffer, shard = [], shard + 1

        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        results = pool.map(_load, tasks, chunksize=16) if pool else map(_load, tasks)
        try:
            for i, (pixels, error) in enumerate(tqdm(results, total=len(tasks), desc="images", unit="img")):
                if pixels is None:
                    unreadable.append({"isic_id": columns["isic_id"][i], "path": paths[i], "error": error})
                    continue
                index_rows.append(i)
                shard_of.append(shard)
                row_of.append(len(buffer))
                buffer.append(pixels)
                if len(buffer) == shard_size:
                    flush()
            flush()
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        if not index_rows:
            raise PipelineError(f"none of the {len(tasks)} images in {raw_dir}/images could be decoded.")
        index = pd.DataFrame({**{c: [columns[c][i] for i in index_rows] for c in INDEX_COLUMNS},
                              "shard": shard_of, "row": row_of})
        index["label"] = index["label"].astype("Int8")
        index["label_multiclass"] = index["label_multiclass"].astype("Int8")
        index.to_parquet(tmp / "index.parquet", index=False)
        pd.DataFrame(unreadable, columns=["isic_id", "path", "error"]).to_csv(tmp / "unreadable.csv", index=False)
        summary = {"images": len(index), "unreadable": len(unreadable), "shards": shard, "size": size}
        write_json(tmp / "summary.json", summary)
    for item in unreadable:
        log.warning("images: excluded unreadable %s (%s)", item["path"], item["error"])
    log.info("images: %d images in %d shard(s) of %dx%d, %d unreadable (listed in %s/unreadable.csv)",
             summary["images"], summary["shards"], size, size, len(unreadable), out)
    return summary
