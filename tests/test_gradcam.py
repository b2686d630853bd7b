"""Grad-CAM on the image models skinlesion builds (tiny ones, built here)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from skinlesion import gradcam, models  # noqa: E402
from skinlesion import bundle  # noqa: E402
from skinlesion.bundle import Bundle  # noqa: E402
from skinlesion.variant import of as variant  # noqa: E402

SIZE = 32


def red_detector(task: str = "binary") -> "keras.Model":
    """The study's CNN with hand-set weights: conv0 responds to red (R - G - B), everything after is positive."""
    cfg = variant({"name": "red", "kind": "cnn", "task": task, "filters": [1], "dense_units": 1})
    model = models.cnn(cfg, SIZE, seed=0)
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[:, :, 0, 0], kernel[:, :, 1, 0], kernel[:, :, 2, 0] = 1 / 9, -1 / 9, -1 / 9
    model.get_layer("conv0").set_weights([kernel, np.zeros(1, np.float32)])
    dense = model.get_layer("dense")
    dense.set_weights([np.full(dense.get_weights()[0].shape, 0.01, np.float32), np.zeros(1, np.float32)])
    out = model.get_layer("output")
    if task == "binary":
        out.set_weights([np.ones((1, 1), np.float32), np.full(1, -1.0, np.float32)])
    else:  # class 1 = "red"; class 0 = "not red", and so are the three other classes
        weights = np.full((1, 5), -1.0, np.float32)
        weights[0, 1] = 1.0
        out.set_weights([weights, np.zeros(5, np.float32)])
    return model


def image_with_square(rows: slice, cols: slice) -> np.ndarray:
    image = np.full((SIZE, SIZE, 3), 110, np.uint8)
    image[rows, cols] = (250, 10, 10)
    return image


def quadrant_means(cam: np.ndarray) -> dict[str, float]:
    h = SIZE // 2
    return {"top-left": cam[:h, :h].mean(), "top-right": cam[:h, h:].mean(),
            "bottom-left": cam[h:, :h].mean(), "bottom-right": cam[h:, h:].mean()}


@pytest.mark.parametrize("where, rows, cols", [("top-right", slice(3, 11), slice(21, 29)),
                                              ("bottom-left", slice(21, 29), slice(3, 11))])
def test_heat_map_finds_the_red_lesion_where_it_is(where, rows, cols):
    model = red_detector()
    images = np.stack([image_with_square(rows, cols), image_with_square(rows, cols)])
    cams, probs = gradcam.heatmaps(model, images)
    assert cams.shape == (2, SIZE, SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() == pytest.approx(1.0)
    means = quadrant_means(cams[0])
    assert max(means, key=means.get) == where
    others = [v for k, v in means.items() if k != where]
    assert means[where] > 3 * max(others)
    peak = np.unravel_index(cams[0].argmax(), cams[0].shape)
    assert rows.start - 2 <= peak[0] < rows.stop + 2 and cols.start - 2 <= peak[1] < cols.stop + 2
    np.testing.assert_allclose(probs[:, 0], model.predict(images, verbose=0)[:, 0], atol=1e-6)


def test_multiclass_map_follows_the_class_asked_for():
    model = red_detector("multiclass")
    image = image_with_square(slice(3, 11), slice(3, 11))[None]
    red, _ = gradcam.heatmaps(model, image, class_index=1)
    not_red, _ = gradcam.heatmaps(model, image, class_index=0)
    predicted, probs = gradcam.heatmaps(model, image)  # default: the predicted class (here: red)
    assert probs[0].argmax() == 1
    means = quadrant_means(red[0])
    assert max(means, key=means.get) == "top-left" and means["top-left"] > 3 * means["bottom-right"]
    assert not_red.max() == 0  # red is evidence against "not red": nothing positive to show
    np.testing.assert_allclose(predicted, red)


def _transfer(n_meta: int = 0, pool_from: tuple[str, ...] = ()):
    cfg = variant({"name": "tiny_transfer", "kind": "dual" if n_meta else "transfer", "task": "binary",
                   "backbone": "mobilenet_v2", "dense_units": 4, "augment": {"flip": True, "rotation": 0.1},
                   "features": ["age_approx"], **({"pool_from": list(pool_from)} if pool_from else {})})
    base = models.backbone("mobilenet_v2", SIZE, None, cfg.pool_from)
    head = models.head(models.feature_width(base), cfg, n_meta)
    return models.transfer(cfg, SIZE, base, head, n_meta, seed=0), cfg


def test_transfer_and_dual_models_saved_and_loaded(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    meta = rng.normal(size=(3, 2)).astype(np.float32)
    for kind, n_meta, pool_from in (("transfer", 0, ()), ("dual", 2, ()), ("pooled", 2, ("block_6_expand_relu",))):
        model, cfg = _transfer(n_meta, pool_from)
        # pool_from: features from two depths (1280 + 192 channels), the model still a chain for Grad-CAM
        assert model.get_layer("head").inputs[0].shape[-1] == (1472 if pool_from else 1280)
        folder = tmp_path / kind
        folder.mkdir()
        model.save(folder / "model.keras")
        bundle.seal(folder, bundle.manifest(cfg, input_size=SIZE, imputation_means={},
                                                             training_data={}, weights={}))
        loaded = Bundle(folder).model
        inputs = [images, meta] if n_meta else images
        cams, probs = gradcam.heatmaps(loaded, images, meta if n_meta else None)
        assert cams.shape == (3, SIZE, SIZE) and np.isfinite(cams).all()
        assert cams.min() >= 0 and cams.max() <= 1
        # The replayed forward pass (augmentation skipped) is the model's own inference.
        np.testing.assert_allclose(probs[:, 0], loaded.predict(inputs, verbose=0)[:, 0], atol=1e-5)
        again, _ = gradcam.heatmaps(loaded, images, meta if n_meta else None)
        np.testing.assert_array_equal(cams, again)


def test_model_without_convolutions_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="no convolutional layer"):
        gradcam.heatmaps(model, np.zeros((1, 4), np.uint8))


def test_sample_outcomes_is_seeded_and_covers_all_four():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 1])
    pred = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0])
    picked = gradcam.sample_outcomes(y, pred, 2, seed=3)
    assert picked == gradcam.sample_outcomes(y, pred, 2, seed=3)
    labels = [label for label, _ in picked]
    assert {labels.count(k) for k in ("true positive", "false negative", "false positive", "true negative")} <= {1, 2}
    for label, i in picked:
        assert label.startswith("true") == (y[i] == pred[i])
        assert label.endswith("positive") == (pred[i] == 1)


def test_overlay_keeps_shape_and_reddens_the_hot_spot():
    image = np.full((8, 8, 3), 128, np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[0, 0] = 1.0
    out = gradcam.overlay(image, cam)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[0, 0, 0] > out[0, 0, 2] and out[7, 7, 2] > out[7, 7, 0]  # jet: red at 1, blue at 0
