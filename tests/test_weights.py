import pytest

from skinlesion import weights
from skinlesion.errors import PipelineError


@pytest.fixture(autouse=True)
def no_network_no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("SKINLESION_OFFLINE", "1")


def test_explicit_file_wins(tmp_path):
    f = tmp_path / "w.h5"
    f.write_bytes(b"x")
    w = weights.resolve("mobilenet_v2", str(f), 128, allow_random=False)
    assert w.keras_arg == str(f.resolve()) and w.imagenet


def test_keras_cache_is_second(tmp_path):
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    (cache / weights.keras_cache_file("mobilenet_v2", 128)).write_bytes(b"x")
    w = weights.resolve("mobilenet_v2", str(tmp_path / "missing.h5"), 128, allow_random=False)
    assert w.keras_arg == "imagenet" and "cache" in w.source


def test_synthetic_may_fall_back_to_random_and_says_so():
    w = weights.resolve("resnet50", None, 128, allow_random=True)
    assert w.keras_arg is None and not w.imagenet and "RANDOM" in w.source


def test_real_data_without_weights_is_a_clear_error():
    with pytest.raises(PipelineError) as err:
        weights.resolve("resnet50", None, 128, allow_random=False)
    message = str(err.value)
    assert "train.weights.resnet50" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and "internet" in message


def test_the_shipped_weights_file_is_the_one_its_readme_describes():
    """weights/README.md states the file's size and sha256 (its provenance); the file in git must match, so a
    truncated or replaced file (a Git LFS pointer, a bad merge) fails here before any test trains with it."""
    import hashlib
    import re

    from conftest import REPO

    folder = REPO / "weights"
    row = re.search(r"\| `([^`]+\.h5)` \| ([\d,]+) \| `([0-9a-f]{64})` \|", (folder / "README.md").read_text())
    name, size, sha256 = row.group(1), int(row.group(2).replace(",", "")), row.group(3)
    data = (folder / name).read_bytes()
    assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256
