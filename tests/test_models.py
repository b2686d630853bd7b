"""Model builders: shapes, outputs, augmentation at inference, and the backbone surgery fine-tuning uses."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from skinlesion import backbones, models  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.variant import of as variant  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def mobilenet():
    return models.backbone("mobilenet_v2", SIZE, None)


def _images(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype("float32")


@pytest.mark.parametrize("task,units", [("binary", 1), ("multiclass", 5)])
def test_output_layers(task, units):
    cfg = {"name": "m", "task": task, "filters": [4], "dense_units": 8, "hidden_units": [8, 4], "dropout": 0.2}
    cnn = models.cnn(variant({**cfg, "kind": "cnn"}), SIZE)
    assert cnn.output_shape == (None, units)
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).normal(size=(20, 3)).astype("float32"))
    mlp = models.mlp(variant({**cfg, "kind": "mlp"}), 3, norm)
    assert mlp.output_shape == (None, units)
    assert [layer.name for layer in mlp.layers if layer.name.startswith("dense")] == ["dense0", "dense1"]
    probs = np.asarray(cnn(_images()))
    if task == "multiclass":
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    else:
        assert ((probs >= 0) & (probs <= 1)).all()


def test_dual_head_normalises_and_concatenates_metadata():
    norm = keras.layers.Normalization(name="normalize_metadata")
    meta = np.random.default_rng(0).normal(50, 10, size=(30, 4)).astype("float32")
    norm.adapt(meta)
    head = models.head(16, variant({"kind": "dual", "task": "binary", "backbone": "mobilenet_v2", "dense_units": 8}),
                       extra_dim=4, meta_norm=norm)
    assert [i.shape for i in head.inputs] == [(None, 16), (None, 4)]
    assert head.get_layer("concat").output.shape == (None, 20)
    assert head.get_layer("normalize_metadata") is norm


def test_transfer_model_and_augmentation_identity_at_inference(mobilenet):
    cfg = {"name": "t", "kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "dense_units": 8,
           "augment": {"flip": True, "rotation": 0.2, "zoom": 0.2}}
    head = models.head(mobilenet.output_shape[-1], variant(cfg))
    model = models.transfer(variant(cfg), SIZE, mobilenet, head, seed=0)
    assert [layer.name for layer in model.layers if layer.name.startswith("aug_")] == \
        ["aug_flip", "aug_rotation", "aug_zoom"]
    x = _images()
    plain = models.transfer(variant({**cfg, "augment": None}), SIZE, mobilenet, head)
    assert np.allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)


def test_has_augmentation():
    def augmented(augment):
        return variant({"kind": "cnn", "task": "binary", "augment": augment}).augmented

    assert not augmented(None) and not augmented({})
    assert not augmented({"flip": False, "rotation": 0, "zoom": 0})
    assert augmented({"rotation": 0.1})  # flip defaults to on
    assert augmented({"flip": True})


def test_unfreeze_index(mobilenet):
    n = len(mobilenet.layers)
    assert models.unfreeze_index(mobilenet, None) == 0
    assert models.unfreeze_index(mobilenet, "block_13_expand") == \
        [layer.name for layer in mobilenet.layers].index("block_13_expand")
    assert models.unfreeze_index(mobilenet, -10) == n - 10
    with pytest.raises(PipelineError, match="no layer named 'block_99'"):
        models.unfreeze_index(mobilenet, "block_99")
    with pytest.raises(PipelineError, match="outside"):
        models.unfreeze_index(mobilenet, n)
    assert mobilenet.layers[models.unfreeze_index(mobilenet, "top")].name == "block_13_expand"


def test_set_trainable_from_keeps_bottom_and_batchnorm_frozen():
    base = models.backbone("mobilenet_v2", SIZE, None)
    start = models.unfreeze_index(base, "block_15_expand")
    names = models.set_trainable_from(base, start)
    assert names[0] == "block_15_expand" and "Conv_1" in names
    assert not any(layer.trainable for layer in base.layers[:start])
    for layer in base.layers[start:]:
        assert layer.trainable == (not isinstance(layer, keras.layers.BatchNormalization))
    frozen_weights = sum(w.numpy().size for layer in base.layers[:start] for w in layer.weights)
    assert frozen_weights > 0 and base.trainable_weights  # some of each


def test_split_backbone_is_exact_and_refuses_unclean_cuts(mobilenet):
    names = [layer.name for layer in mobilenet.layers]
    bottom, top = models.split_backbone(mobilenet, names.index("block_13_expand"))
    x = keras.applications.mobilenet_v2.preprocess_input(_images())
    assert np.allclose(top(bottom(x)), mobilenet(x), atol=1e-4)
    assert set(map(id, top.layers[1:])) <= set(map(id, mobilenet.layers))  # shared, not copied
    # inside a residual block the skip connection jumps over the cut: no clean split
    assert models.split_backbone(mobilenet, names.index("block_14_project")) is None
    assert models.split_backbone(mobilenet, names.index("block_14_add")) is None  # two inputs
    assert models.split_backbone(mobilenet, 0) is None


def test_caffe_preprocessing_matches_keras():
    layer = models.preprocessing("resnet50")
    x = _images()
    assert np.allclose(layer(x), keras.applications.resnet50.preprocess_input(x.copy()), atol=1e-4)


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_every_registered_backbone_builds_from_random_weights_and_cuts_at_its_top(name):
    """A backbone is one registry entry: it builds at 32 px with random weights, its preprocessing layer
    exists, and its `top` layer (fine-tuning the last blocks) is a layer of the network."""
    base = models.backbone(name, SIZE, None)
    assert base.name == f"backbone_{name}" and len(base.output_shape) == 4
    start = models.unfreeze_index(base, "top")
    assert 0 < start < len(base.layers)
    cfg = variant({"kind": "transfer", "task": "binary", "backbone": name, "dense_units": 4, "name": "t"})
    model = models.transfer(cfg, SIZE, base, models.head(base.output_shape[-1], cfg))
    assert model.get_layer("preprocess") is not None
    probs = model.predict(_images(2), verbose=0)
    assert probs.shape == (2, 1) and np.isfinite(probs).all()


def test_pool_from_needs_feature_maps_of_the_backbone():
    """A layer without a (height, width, channels) output cannot be average-pooled: one clear error, before
    any training (efficientnet_b0's squeeze-and-excitation squeeze is a vector per image)."""
    with pytest.raises(PipelineError, match="'block2a_se_squeeze' gives no feature map"):
        models.backbone("efficientnet_b0", 32, None, ("block2a_se_squeeze",))
    base = models.backbone("mobilenet_v2", 32, None, ("block_6_expand_relu",))
    assert base.name == "backbone_mobilenet_v2" and models.feature_width(base) == 192 + 1280


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_the_architecture_validate_checks_names_the_layers_training_builds(name):
    """`skinlesion validate` checks layer names against the architecture built without weights
    (backbones.layers); training checks them on the network it builds: the same names, feature maps and
    output, at any input size (fresh-session names: the automatically named input layer too)."""
    keras.utils.clear_session()
    built = backbones.layer_table(models.backbone(name, 64, None))
    assert backbones.layers(name, 64) == built == backbones.layers(name, 96)
    assert sum(layer.output for layer in built) == 1 and built[-1].output
    assert backbones.get(name).top_blocks_from in [layer.name for layer in built]
