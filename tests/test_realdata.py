"""A few hundred real HAM10000 images through fetch -> metadata -> images -> train -> evaluate.

Skipped where ../shared/data/ham10000 is absent; the MobileNetV2 weights are the ones weights/ ships.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from conftest import HAM10000, MOBILENET_WEIGHTS as WEIGHTS, base_params
from skinlesion import evaluation, images, metadata, raw_layout, training
from skinlesion.params import validate
from skinlesion.sources import fetch

LIMIT = 300

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not (HAM10000 / "HAM10000_metadata.csv").exists(), reason=f"{HAM10000} not found"),
]
VARIANTS = {
    "logreg": {"kind": "logreg", "task": "binary"},
    "mobilenet_frozen": {"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "freeze": True,
                         "dense_units": 64},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ham")
    params = copy.deepcopy(base_params())
    params["data"] = {"source": "local", "local": {"path": str(HAM10000), "layout": "auto", "limit": LIMIT}}
    params["images"] = {"size": 64, "shard_size": 128, "workers": 2}
    params["train"].update({"epochs": 30, "patience": 5, "weights": {"mobilenet_v2": str(WEIGHTS), "resnet50": None}})
    for key, value in {"bootstrap": 0, "gradcam_per_outcome": 0}.items():
        if key in params["evaluate"]:
            params["evaluate"][key] = value
    params["variants"] = VARIANTS
    params = validate(params)
    fetch(params, root / "raw")
    metadata.run(root / "raw", root / "metadata.parquet", params)
    images.run(root / "metadata.parquet", root / "raw", root / "shards", params)
    results = {}
    for name in VARIANTS:
        training.run(params, name, root / "metadata.parquet", root / "shards", root / "models" / name)
        results[name] = evaluation.run(params, name, root / "models" / name, root / "metadata.parquet",
                                       root / "shards", root / "results" / name)
    return root, results


def test_data_stages_on_real_images(run):
    root, _ = run
    raw = raw_layout.image_files(root / "raw")
    assert 0.8 * LIMIT <= len(raw) <= LIMIT
    table = pd.read_parquet(root / "metadata.parquet")
    assert set(table["split"]) == {"train", "val", "test"}
    assert table.groupby("group")["split"].nunique().max() == 1  # no lesion on two sides
    assert 0.05 < table["label"].astype(float).mean() < 0.5  # HAM10000: about a fifth malignant
    shard = np.load(root / "shards" / "shard-00000.npy")
    assert shard.shape[1:] == (64, 64, 3) and shard.dtype == np.uint8 and shard.std() > 10


def test_models_and_metrics_are_sane(run):
    root, results = run
    info = json.loads((root / "models" / "mobilenet_frozen" / "train.json").read_text())
    assert info["imagenet_weights"] is True and "RANDOM" not in info["weights"]
    assert info["features_once"] is True and info["n_train"] > 100
    for name, result in results.items():
        for test_set in ("test_natural",):  # issue 11: no class-balanced test set
            m = result[test_set]
            assert m["n"] >= 10 and m["n_malignant"] >= 2
            assert 0 <= m["roc_auc"] <= 1 and 0 <= m["sensitivity"] <= 1 and 0 <= m["specificity"] <= 1
            assert 0 < m["threshold"] < 1
        history = pd.read_csv(root / "models" / name / "history.csv")
        assert name == "logreg" or len(history) >= 2
    # real ImageNet features on real lesions carry signal (the full run gets ~0.85; chance is 0.5)
    assert results["mobilenet_frozen"]["val"]["roc_auc"] > 0.55 or results["mobilenet_frozen"]["test_natural"]["roc_auc"] > 0.55
