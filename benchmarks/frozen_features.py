"""Benchmark: training a head on a frozen backbone, features computed once vs. the plain way.

In the same run, on the same images, the same head (GAP -> dense ReLU -> sigmoid), the same epochs:

  once    what `skinlesion train` does for a frozen backbone without augmentation: one pass of the
          backbone over train and val (skinlesion.models.pooled_features), then the head trains on the
          pooled feature vectors
  plain   the usual Keras way: the full image model (preprocess -> frozen backbone -> GAP -> head) is
          fit on the images, so the backbone runs over every train and val image in every epoch

Both run a fixed number of epochs (no early stopping), so the work is the same; the two are timed in
alternation (once, plain, once, plain, ...) and the median of each is reported with the ratio
plain / once. Images are real HAM10000 lesions (../shared/data/ham10000) when present, else random
pixels (the timing does not depend on the content).

    .venv/bin/python benchmarks/frozen_features.py --train 1024 --val 256 --size 128 --epochs 10 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HAM = SHARED / "data" / "ham10000"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top_imagenet.h5"


def load_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(seed)
    if (HAM / "HAM10000_metadata.csv").exists():
        import pandas as pd

        from skinlesion.images import load_image

        meta = pd.read_csv(HAM / "HAM10000_metadata.csv").sample(n, random_state=seed)
        x = np.stack([load_image(HAM / "images" / f"{i}.jpg", size) for i in meta["image_id"]])
        y = meta["dx"].isin(["mel", "bcc", "akiec"]).to_numpy(dtype=np.int64)
        return x, y, f"{n} HAM10000 images"
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return x, rng.integers(0, 2, n), f"{n} random images"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1024)
    parser.add_argument("--val", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from skinlesion import models, training, variant
    from skinlesion.reproducibility import seed_everything

    x, y, what = load_images(args.train + args.val, args.size, args.seed)
    x_train, y_train, x_val, y_val = x[:args.train], y[:args.train], x[args.train:], y[args.train:]
    weights = str(WEIGHTS) if WEIGHTS.exists() else None
    cfg = variant.of({"name": "bench", "kind": "transfer", "task": "binary", "backbone": "mobilenet_v2",
                      "dense_units": 128})
    fit_args = dict(batch_size=args.batch_size, epochs=args.epochs, verbose=0, shuffle=True)

    def frozen_base_and_head():
        """The same seeded starting point for both arms (built outside the timed part)."""
        seed_everything(args.seed)
        base = models.backbone("mobilenet_v2", args.size, weights)
        base.trainable = False
        return base, models.head(base.output_shape[-1], cfg)

    def once() -> float:
        base, head = frozen_base_and_head()
        started = time.perf_counter()
        extractor = models.pooled_features(base, "mobilenet_v2", args.size)
        f_train = extractor.predict(x_train, batch_size=training.FEATURE_BATCH, verbose=0)
        f_val = extractor.predict(x_val, batch_size=training.FEATURE_BATCH, verbose=0)
        training._compile(head, cfg, 0.001)
        head.fit(f_train, y_train, validation_data=(f_val, y_val), **fit_args)
        return time.perf_counter() - started

    def plain() -> float:
        base, head = frozen_base_and_head()
        started = time.perf_counter()
        model = models.transfer(cfg, args.size, base, head)
        training._compile(model, cfg, 0.001)
        model.fit(x_train, y_train, validation_data=(x_val, y_val), **fit_args)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"once": [], "plain": []}
    for r in range(args.repeats):
        for name, fn in (("once", once), ("plain", plain)):
            seconds = fn()
            times[name].append(seconds)
            print(f"repeat {r + 1}: {name:5s} {seconds:8.2f} s", flush=True)
            keras.backend.clear_session()
    once_s, plain_s = statistics.median(times["once"]), statistics.median(times["plain"])
    result = {
        "data": what, "train": args.train, "val": args.val, "size": args.size, "epochs": args.epochs,
        "batch_size": args.batch_size, "repeats": args.repeats, "backbone": "mobilenet_v2",
        "weights": "ImageNet (offline file)" if weights else "random",
        "once_seconds": [round(t, 2) for t in times["once"]], "plain_seconds": [round(t, 2) for t in times["plain"]],
        "once_median_s": round(once_s, 2), "plain_median_s": round(plain_s, 2),
        "ratio_plain_over_once": round(plain_s / once_s, 2),
        "command": " ".join(["python", "benchmarks/frozen_features.py", *(argv if argv is not None else sys.argv[1:])]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "processor": platform.processor() or None,
        "cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "python": platform.python_version(),
    }
    print(f"\n{what}, {args.size} px, {args.epochs} epochs, batch {args.batch_size}, median of {args.repeats}:")
    print(f"  features once: {once_s:8.2f} s")
    print(f"  plain fit:     {plain_s:8.2f} s")
    print(f"  ratio plain / once: {plain_s / once_s:.1f}x")
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
