"""Reading the processed shards and the metadata table back as arrays for training and evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import tasks
from .errors import PipelineError
from .tasks import Task


@dataclass
class Split:
    """One split's rows: metadata (aligned row for row), and images loaded on demand."""

    table: pd.DataFrame
    shards_dir: Path | None = None

    def __len__(self) -> int:
        return len(self.table)

    def images(self) -> np.ndarray:
        if self.shards_dir is None:
            raise PipelineError("this variant was loaded without images")
        out = np.empty((len(self.table),) + _shape(self.shards_dir), dtype=np.uint8)
        for shard, rows in self.table.groupby("shard", sort=True).groups.items():
            data = np.load(self.shards_dir / f"shard-{int(shard):05d}.npy", mmap_mode="r")
            positions = self.table.index.get_indexer(rows)
            out[positions] = data[self.table.loc[rows, "row"].to_numpy()]
        return out

    def labels(self, task: Task | str) -> np.ndarray:
        return self.table[_task(task).label_column].to_numpy(dtype=np.int64)


def _task(task: Task | str) -> Task:
    return tasks.get(task) if isinstance(task, str) else task


def _shape(shards_dir: Path) -> tuple[int, ...]:
    return np.load(shards_dir / "shard-00000.npy", mmap_mode="r").shape[1:]


def load_splits(table_path: str | os.PathLike, shards_dir: str | os.PathLike | None, task: Task | str) -> dict[str, Split]:
    """train/val/test Splits, in a fixed order, restricted to rows the task has a label for.

    With shards, rows whose image was unreadable (absent from the index) are left out too.
    """
    from .metadata import load

    table = load(table_path)
    if shards_dir is not None:
        shards_dir = Path(shards_dir)
        index_path = shards_dir / "index.parquet"
        if not index_path.exists():
            raise PipelineError(f"{index_path} not found: the images stage writes it (skinlesion images).")
        index = pd.read_parquet(index_path, columns=["isic_id", "shard", "row"])
        table = table.merge(index, on="isic_id", how="inner")
    table = table[table[_task(task).label_column].notna()]  # the rows the task has a label for
    table = table.sort_values("isic_id").reset_index(drop=True)
    return {
        name: Split(table[table["split"] == name].reset_index(drop=True), shards_dir)
        for name in ("train", "val", "test")
    }


def image_batches(split: Split, y: np.ndarray, meta: np.ndarray | None, batch_size: int, shuffle: bool,
                  seed: int, prefetch: int | None = None):
    """A tf.data pipeline over the split's images read from the shards (memory-mapped, never all in
    memory): ((images[, meta]), y) batches, reshuffled every epoch when `shuffle`, decoded in parallel
    and prefetched so the accelerator never waits for the disk (train.input_pipeline: tf_data).

    Batches hold the same rows as the in-memory path but in another order, so a model trained through
    it is not byte-identical to one trained from arrays (the default)."""
    import tensorflow as tf

    if split.shards_dir is None:
        raise PipelineError("this variant was loaded without images")
    shards = split.table["shard"].to_numpy(dtype=np.int64)
    rows = split.table["row"].to_numpy(dtype=np.int64)
    cache: dict[int, np.ndarray] = {}

    def shard(k: int) -> np.ndarray:
        if k not in cache:
            cache[k] = np.load(split.shards_dir / f"shard-{k:05d}.npy", mmap_mode="r")
        return cache[k]

    shape = _shape(split.shards_dir)

    def gather(positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions),) + shape, dtype=np.uint8)
        for j, p in enumerate(positions):
            out[j] = shard(int(shards[p]))[rows[p]]
        return out

    def load(positions):
        images = tf.numpy_function(gather, [positions], tf.uint8, stateful=False)
        images.set_shape((None,) + shape)
        x = (images, tf.gather(meta_t, positions)) if meta is not None else images
        return x, tf.gather(y_t, positions)

    y_t = tf.constant(y)
    meta_t = tf.constant(meta) if meta is not None else None
    ds = tf.data.Dataset.range(len(split))
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(prefetch if prefetch is not None else tf.data.AUTOTUNE)
