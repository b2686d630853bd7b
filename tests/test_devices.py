"""The GPU path, exercised on the CPU (no GPU machine was available when this was written): devices
reported in train.json, MirroredStrategy, mixed precision, XLA off, the tf.data pipeline over the shards;
the images stage's workers come from the runner's threads and never change the shards."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from skinlesion import devices, images
from test_training import FAST, FROZEN, data, offline, tiny_params  # noqa: F401 (fixtures)
from skinlesion import training

pytestmark = pytest.mark.timeout(600)
CNN = {"kind": "cnn", "task": "binary", "filters": [4, 8], "dense_units": 8, **FAST}


def _train(data, name, variant, **train_settings):
    params = tiny_params({name: variant})
    params["train"].update(train_settings)
    out = data / "models" / name
    info = training.run(params, name, data / "metadata.parquet", data / "shards", out)
    return info, out


def test_default_run_says_it_trained_on_the_cpu_without_a_strategy(data):
    info, out = _train(data, "cnn_default", CNN)
    d = json.loads((out / "train.json").read_text())["devices"]
    assert d == info["devices"]
    assert d["device"] == "CPU" and d["gpus"] == [] and d["strategy"] is None and d["replicas"] == 1
    assert d["mixed_precision"] is False and d["precision_policy"] == "float32"
    assert d["xla"] == "auto" and d["xla_used"] is False and d["input_pipeline"] == "arrays"


def test_mirrored_mixed_precision_tf_data_cnn_trains_on_the_cpu(data):
    import keras

    info, out = _train(data, "cnn_gpu_path", CNN, distribute="mirrored", mixed_precision=True, xla=False,
                       input_pipeline="tf_data")
    d = info["devices"]
    assert d["strategy"] == "MirroredStrategy" and d["replicas"] == 1
    assert d["mixed_precision"] is True and d["precision_policy"] == "mixed_bfloat16"  # no GPU here
    assert d["xla_used"] is False and d["input_pipeline"] == "tf_data"
    assert info["phases"][0]["inputs"] == "images (tf.data from the shards)"
    assert keras.mixed_precision.global_policy().name == "float32"  # reset after training
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert model.get_layer("output").dtype_policy.compute_dtype == "float32"
    p = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
    assert p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))


def test_tf_data_feeds_fine_tuning_on_images_with_metadata(data):
    variant = {**FROZEN, "kind": "dual", "freeze": False, "epochs": 1, "augment": {"rotation": 0.1},
               "fine_tune": {"warmup_epochs": 1, "epochs": 1, "unfreeze_from": "block_13_expand"}}
    info, _ = _train(data, "dual_stream", variant, input_pipeline="tf_data")
    assert [p["phase"] for p in info["phases"]] == ["frozen", "fine_tune"]
    assert all("tf.data from the shards" in p["inputs"] for p in info["phases"])


def test_image_batches_hold_every_row_once_per_epoch(data):
    from skinlesion import dataset

    split = dataset.load_splits(data / "metadata.parquet", data / "shards", "binary")["train"]
    y = np.arange(len(split))  # the row number as label: which rows each batch holds
    ds = dataset.image_batches(split, y, None, 8, True, 0)
    seen = [np.concatenate([yb.numpy() for _, yb in ds]) for _ in range(2)]
    assert sorted(seen[0]) == sorted(seen[1]) == list(range(len(split)))
    assert list(seen[0]) != list(seen[1])  # reshuffled every epoch
    images_all = split.images()
    for xb, yb in dataset.image_batches(split, y, None, 8, False, 0).take(2):
        assert np.array_equal(xb.numpy(), images_all[yb.numpy()])


def test_setup_reads_the_train_section():
    assert devices.settings({}) == devices.DEFAULTS
    s = devices.setup({"distribute": "none", "xla": True})
    assert s.strategy is None and s.compile_args() == {"jit_compile": True}
    assert devices.setup({}).compile_args() == {}


# ----------------------------------------------------------------------------------------------------
# images: threads


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_workers_come_from_the_runners_threads(monkeypatch):
    monkeypatch.delenv("SKINLESION_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert images.workers_for({"workers": 3}) == (3, "images.workers")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # what Snakemake exports for a rule's threads
    assert images.workers_for({"workers": 3}) == (8, "OMP_NUM_THREADS")
    assert images.workers_for({"workers": 3}, n_tasks=5) == (5, "OMP_NUM_THREADS")
    monkeypatch.setenv("SKINLESION_THREADS", "2")
    assert images.workers_for({"workers": 3}) == (2, "SKINLESION_THREADS")
    monkeypatch.setenv("SKINLESION_THREADS", "x")
    assert images.workers_for({"workers": 3}) == (8, "OMP_NUM_THREADS")


def test_shards_are_identical_with_one_and_two_workers(data, tmp_path, monkeypatch):
    params = tiny_params({"logreg": {"kind": "logreg", "task": "binary"}})
    digests = []
    for threads in ("1", "2"):
        monkeypatch.setenv("SKINLESION_THREADS", threads)
        out = tmp_path / f"shards{threads}"
        images.run(data / "metadata.parquet", data / "raw", out, params)
        digests.append(_digest(out))
    assert digests[0] == digests[1] == _digest(data / "shards")


def test_images_stage_imports_no_scikit_learn_nor_tensorflow():
    code = ("import sys; from skinlesion import cli; cli.build_parser(); import skinlesion.images; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'tensorflow', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
