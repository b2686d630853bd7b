import numpy as np
import pandas as pd
from PIL import Image

from skinlesion import images, metadata

from conftest import base_params, records


def test_load_image_resizes_any_shape_to_square_rgb(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (600, 400), (200, 100, 50)).save(path)
    grey = tmp_path / "grey.png"
    Image.new("L", (50, 80), 128).save(grey)
    assert images.load_image(path, 128).shape == (128, 128, 3)
    out = images.load_image(grey, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_shards_align_with_index_and_list_unreadable(make_raw, tmp_path):
    rows = records(20)
    raw = make_raw(rows, corrupt=("ISIC_0000011",))
    params = base_params()
    params["images"] = {"size": 48, "shard_size": 16, "workers": 2}
    table = tmp_path / "metadata.parquet"
    metadata.run(raw, table, params)
    out = tmp_path / "shards"
    summary = images.run(table, raw, out, params)

    index = pd.read_parquet(out / "index.parquet")
    unreadable = pd.read_csv(out / "unreadable.csv")
    assert unreadable["isic_id"].tolist() == ["ISIC_0000011"]
    assert "ISIC_0000011" not in set(index["isic_id"])
    assert summary["images"] == len(index) == len(pd.read_parquet(table)) - 1
    assert summary["shards"] == -(-len(index) // 16)
    # every index row points at exactly the pixels of its own source image
    for _, row in index.sample(8, random_state=0).iterrows():
        shard = np.load(out / f"shard-{row['shard']:05d}.npy")
        assert shard.shape[1:] == (48, 48, 3)
        expected = images.load_image(raw / "images" / f"{row['isic_id']}.jpg", 48)
        assert np.array_equal(shard[row["row"]], expected)


def test_failed_stage_leaves_no_output(make_raw, tmp_path):
    raw = make_raw(records(3), corrupt=tuple(f"ISIC_{p * 10 + k:07d}" for p in range(3) for k in range(2)))
    params = base_params()
    table = tmp_path / "metadata.parquet"
    metadata.run(raw, table, params)
    out = tmp_path / "shards"
    try:
        images.run(table, raw, out, params)
    except Exception as exc:
        assert "could be decoded" in str(exc)
    else:
        raise AssertionError("expected an error when no image decodes")
    assert not out.exists()
    assert not any(p.name.startswith(".shards") for p in tmp_path.iterdir())
