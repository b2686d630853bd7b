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


def run(table_path: str | os.PathLike, raw_dir: str | os.PathLike, out: str | os.PathLike, params: dict) -> dict:
    from .metadata import load

    cfg = params["images"]
    size, shard_size, workers = cfg["size"], cfg.get("shard_size", 512), cfg.get("workers", 1)
    table = load(table_path)
    paths = [str(Path(raw_dir) / "images" / name) for name in table["image"]]
    max_pixels = cfg.get("max_pixels", DEFAULT_MAX_PIXELS)
    tasks = [(p, size, max_pixels) for p in paths]

    index_rows, unreadable, buffer, shard = [], [], [], 0
    with atomic_path(out) as tmp:
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
                row = table.iloc[i]
                if pixels is None:
                    unreadable.append({"isic_id": row["isic_id"], "path": paths[i], "error": error})
                    continue
                index_rows.append({**{c: row[c] for c in INDEX_COLUMNS}, "shard": shard, "row": len(buffer)})
                buffer.append(pixels)
                if len(buffer) == shard_size:
                    flush()
            flush()
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        if not index_rows:
            raise PipelineError(f"none of the {len(tasks)} images in {raw_dir}/images could be decoded.")
        index = pd.DataFrame(index_rows)
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
