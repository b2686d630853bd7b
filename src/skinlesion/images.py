"""The images stage: decode every source image once, resize to SxS RGB, write fixed-size shards.

    data/processed/shards/shard-00000.npy ...   uint8 arrays (n, S, S, 3), `shard_size` images each
    data/processed/shards/index.parquet         isic_id, shard, row, split, label, label_multiclass, group
    data/processed/shards/unreadable.csv        images that could not be decoded (excluded, with the error)
    data/processed/shards/summary.json

Images are untrusted: one whose header states more than images.max_pixels pixels is not decoded (a few
bytes can announce gigapixels) and is quarantined in unreadable.csv with its reason, like any image the
decoder rejects.

How an image becomes SxS pixels is decided here, once (Decoding, from the `images:` params): `aspect`
(squash: the whole image resized to SxS, the default; centre_crop: the central square, then resized) and
`colour_constancy` (none, the default; shades_of_gray: Shades of Gray with Minkowski norm
`colour_constancy_p`). The images stage, the external stage, predict and recalibrate all decode through
load_image with the same Decoding: summary.json records a non-default one, train copies it into the
model bundle's `input` block, and predict / recalibrate read it back from there (an absent field is the
default, so older bundles and default runs read and write exactly what they did before).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .errors import PipelineError
from .io import atomic_path, read_json, write_json
from .raw_layout import IMAGE_SUFFIXES
from .raw_packs import DamagedPack, ImageRef, image_refs, is_packed

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["isic_id", "split", "label", "label_multiclass", "group"]
DEFAULT_MAX_PIXELS = 40_000_000  # images.max_pixels: 6000 x 4000 archive images fit with room to spare


class TooManyPixels(ValueError):
    pass


COLOUR_CONSTANCY = ("none", "shades_of_gray")
ASPECTS = ("squash", "centre_crop")


@dataclass(frozen=True)
class Decoding:
    """How load_image turns a file into SxS pixels, besides the size (the `images:` params of the same names).

    The defaults are the original decoder's behaviour, byte for byte."""

    colour_constancy: str = "none"  # none | shades_of_gray
    colour_constancy_p: float = 6  # Shades of Gray's Minkowski norm (p = 6, as leading ISIC 2018/2019 entries)
    aspect: str = "squash"  # squash | centre_crop

    def __post_init__(self):
        if self.colour_constancy not in COLOUR_CONSTANCY:
            raise PipelineError(f"colour_constancy {self.colour_constancy!r}: expected one of {', '.join(COLOUR_CONSTANCY)}")
        if self.aspect not in ASPECTS:
            raise PipelineError(f"aspect {self.aspect!r}: expected one of {', '.join(ASPECTS)}")
        if not float(self.colour_constancy_p) >= 1:
            raise PipelineError(f"colour_constancy_p {self.colour_constancy_p!r}: expected a number >= 1")
        if self.colour_constancy == "none":  # p means nothing then: equal decodings compare equal
            object.__setattr__(self, "colour_constancy_p", Decoding.colour_constancy_p)

    @classmethod
    def of(cls, cfg: dict | None) -> "Decoding":
        """From the `images:` params, a shards summary's `decoding` or a bundle's `input` block (other keys
        ignored; an absent key is the default)."""
        cfg = cfg or {}
        return cls(**{f.name: cfg[f.name] for f in fields(cls) if cfg.get(f.name) is not None})

    def changed(self) -> dict:
        """What differs from the defaults: what summary.json and the bundle record (nothing for the defaults,
        so a default run writes the same bytes as before these options existed). With colour constancy on,
        its p is always written, so a record never depends on what the default p is."""
        out = {}
        if self.aspect != Decoding.aspect:
            out["aspect"] = self.aspect
        if self.colour_constancy != Decoding.colour_constancy:
            out.update(colour_constancy=self.colour_constancy, colour_constancy_p=self.colour_constancy_p)
        return out

    @property
    def default(self) -> bool:
        return not self.changed()


def decoding_of(shards_dir: str | os.PathLike) -> Decoding:
    """The Decoding the images (or external) stage wrote `shards_dir` with, from its summary.json."""
    path = Path(shards_dir) / "summary.json"
    return Decoding.of(read_json(path).get("decoding") if path.is_file() else None)


def shades_of_gray(pixels: np.ndarray, p: float = 6) -> np.ndarray:
    """Shades of Gray colour constancy (Finlayson & Trezzi 2004) of one (h, w, 3) uint8 image.

    The illuminant is estimated per channel as the Minkowski p-mean of the image's values,
    e_c = (mean(I_c ** p)) ** (1/p) (p = 1: grey world; p -> infinity: max-RGB), and each channel is
    scaled by mean(e) / e_c: the illuminant becomes grey and the overall brightness is kept. Clipped to
    0..255 and rounded to uint8. A channel that is black everywhere (e_c = 0) is left as it is."""
    x = pixels.astype(np.float64) / 255.0
    e = np.power(np.mean(np.power(x, p), axis=(0, 1)), 1.0 / p)
    gain = np.divide(e.mean(), e, out=np.ones_like(e), where=e > 0)
    return np.clip(np.rint(x * gain * 255.0), 0, 255).astype(np.uint8)


def flipped(images: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the four flips of NHWC images (FLIPS order: k & 1 horizontal, k & 2 vertical).

    Shared by training (flip augmentation computed once per flip) and scoring (test-time augmentation)."""
    if k & 1:
        images = images[:, :, ::-1]
    if k & 2:
        images = images[:, ::-1]
    return np.ascontiguousarray(images)


FLIPS = ("none", "horizontal", "vertical", "both")


def load_image(path: str | os.PathLike | ImageRef, size: int, max_pixels: int = DEFAULT_MAX_PIXELS,
               decoding: Decoding | None = None) -> np.ndarray:
    """One image (a file, or a raw folder's ImageRef) -> (size, size, 3) uint8. JPEGs are decoded at a
    reduced scale when that suffices.

    `decoding` (default: Decoding()): aspect handling and colour constancy, see Decoding.
    Raises TooManyPixels, before decoding, for an image of more than `max_pixels` pixels."""
    decoding = decoding or Decoding()
    # Pillow's own bomb check (a warning, then an error at twice its limit) must not undercut ours
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    with Image.open(path.fp() if isinstance(path, ImageRef) else path) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise TooManyPixels(f"{width}x{height} = {width * height} pixels, over images.max_pixels ({max_pixels}); "
                                "not decoded")
        # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale: far cheaper than a full decode of a
        # 6000x4000 file; it never goes below the requested size, so quality is kept.
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        if decoding.aspect == "centre_crop":
            # The central square of the (draft-scaled) image: its short side is still >= size, since
            # draft() never goes below the requested size in either dimension.
            w, h = image.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        pixels = np.asarray(image, dtype=np.uint8)
    if decoding.colour_constancy == "shades_of_gray":
        # After the resize: the illuminant is a mean over the image, which a bilinear downscale barely
        # changes (it averages neighbours, softening only the extremes the p-norm leans on), and it costs
        # SxS pixels instead of the full file's millions. Every consumer resizes first, so they agree.
        pixels = shades_of_gray(pixels, float(decoding.colour_constancy_p))
    return pixels


def _load(task: tuple[ImageRef | None, int, int, Decoding]) -> tuple[np.ndarray | None, str | None]:
    ref, size, max_pixels, decoding = task
    if ref is None:
        return None, "not in the raw folder (its images/ or manifest.csv)"
    try:
        return load_image(ref, size, max_pixels, decoding), None
    except DamagedPack:  # not the image's fault: the raw folder changed since fetch, which must stop the stage
        raise
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
    files = {ref.name: ref for ref in image_refs(raw_dir, IMAGE_SUFFIXES)}
    refs = [files.get(name) for name in table["image"]]  # None: not in the raw folder (reported as unreadable)
    max_pixels = cfg.get("max_pixels", DEFAULT_MAX_PIXELS)
    decoding = Decoding.of(cfg)
    tasks = [(ref, size, max_pixels, decoding) for ref in refs]
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
                    unreadable.append({"isic_id": columns["isic_id"][i], "path": str(refs[i] or Path(raw_dir) / table["image"].iat[i]),
                                       "error": error})
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
            where = Path(raw_dir) / ("packs" if is_packed(raw_dir) else "images")
            raise PipelineError(f"none of the {len(tasks)} images in {where} could be decoded.")
        index = pd.DataFrame({**{c: [columns[c][i] for i in index_rows] for c in INDEX_COLUMNS},
                              "shard": shard_of, "row": row_of})
        index["label"] = index["label"].astype("Int8")
        index["label_multiclass"] = index["label_multiclass"].astype("Int8")
        index.to_parquet(tmp / "index.parquet", index=False)
        pd.DataFrame(unreadable, columns=["isic_id", "path", "error"]).to_csv(tmp / "unreadable.csv", index=False)
        summary = {"images": len(index), "unreadable": len(unreadable), "shards": shard, "size": size}
        if not decoding.default:  # absent: the defaults (the same summary bytes as before the options)
            summary["decoding"] = decoding.changed()
        write_json(tmp / "summary.json", summary)
    for item in unreadable:
        log.warning("images: excluded unreadable %s (%s)", item["path"], item["error"])
    log.info("images: %d images in %d shard(s) of %dx%d, %d unreadable (listed in %s/unreadable.csv)",
             summary["images"], summary["shards"], size, size, len(unreadable), out)
    return summary
