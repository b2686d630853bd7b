"""Robustness to acquisition (issue 11 item 3): colour constancy and aspect handling in the one decoder
(images.load_image), recorded in the bundle and applied by predict; colour augmentation; test-time flips."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from skinlesion import bundle, images, metadata, params as P, prediction  # noqa: E402
from skinlesion.bundle import Bundle  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.images import Decoding, flipped, load_image, shades_of_gray  # noqa: E402
from skinlesion.io import read_json, write_json  # noqa: E402
from skinlesion.variant import of as variant  # noqa: E402
from conftest import CNN_SIZE, base_params, records  # noqa: E402


def _reference_load_image(path, size):
    """load_image as it was before the options (commit f61d02a): the defaults must give these bytes."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acq")
    rng = np.random.default_rng(3)
    out = {}
    # HAM10000's shape (200 x 150) with a colour cast (reddish), as JPEG and PNG; a large JPEG (draft path)
    cast = np.clip(rng.normal([170, 110, 90], 25, (150, 200, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(cast).save(folder / "ham.jpg", quality=92)
    Image.fromarray(cast).save(folder / "ham.png")
    Image.fromarray(np.clip(rng.normal(128, 40, (900, 1200, 3)), 0, 255).astype(np.uint8)).save(
        folder / "big.jpg", quality=90)
    Image.new("L", (50, 80), 128).save(folder / "grey.png")
    for name in ("ham.jpg", "ham.png", "big.jpg", "grey.png"):
        out[name] = folder / name
    return out


# ---------------------------------------------------------------------------------------------------------
# the decoder


@pytest.mark.parametrize("name", ["ham.jpg", "ham.png", "big.jpg", "grey.png"])
@pytest.mark.parametrize("size", [32, 128])
def test_defaults_decode_exactly_the_bytes_of_before(files, name, size):
    expected = _reference_load_image(files[name], size)
    assert np.array_equal(load_image(files[name], size), expected)
    assert np.array_equal(load_image(files[name], size, decoding=Decoding()), expected)
    assert np.array_equal(load_image(files[name], size, decoding=Decoding.of({"size": size, "workers": 2})), expected)


def test_shades_of_gray_moves_a_colour_cast_towards_grey_and_keeps_brightness(files):
    before = load_image(files["ham.png"], 64).astype(float)
    after = load_image(files["ham.png"], 64, decoding=Decoding(colour_constancy="shades_of_gray")).astype(float)
    m0, m1 = before.mean(axis=(0, 1)), after.mean(axis=(0, 1))
    assert np.ptp(m0) > 60  # the cast: red far above blue
    assert np.ptp(m1) < np.ptp(m0) / 4, (m0, m1)  # channel means much closer to each other (grey)
    assert abs(m1.mean() - m0.mean()) < 8  # overall brightness kept
    # the illuminant estimate of the corrected image is grey: equal Minkowski p-means
    e = np.power(np.mean(np.power(after / 255, 6), axis=(0, 1)), 1 / 6)
    assert np.ptp(e) < 0.01, e


def test_shades_of_gray_is_the_identity_on_a_grey_image():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (40, 30, 1), dtype=np.uint8), 3, axis=2)
    assert np.array_equal(shades_of_gray(grey, 6), grey)
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.array_equal(shades_of_gray(flat, 6), flat)
    black = np.zeros((4, 4, 3), np.uint8)  # no light: nothing to divide by, left alone
    assert np.array_equal(shades_of_gray(black, 6), black)


def test_shades_of_gray_p_is_used():
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal([150, 100, 80], 40, (32, 32, 3)), 0, 255).astype(np.uint8)
    assert not np.array_equal(shades_of_gray(image, 1), shades_of_gray(image, 6))


def test_centre_crop_of_200x150_is_the_central_150_square_resized(files):
    with Image.open(files["ham.png"]) as im:
        assert im.size == (200, 150)
        expected = np.asarray(im.convert("RGB").crop((25, 0, 175, 150)).resize(
            (64, 64), Image.Resampling.BILINEAR, reducing_gap=2.0))
    got = load_image(files["ham.png"], 64, decoding=Decoding(aspect="centre_crop"))
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, load_image(files["ham.png"], 64))  # squash is another image


def test_centre_crop_of_a_square_is_squash(tmp_path):
    path = tmp_path / "sq.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
    assert np.array_equal(load_image(path, 128, decoding=Decoding(aspect="centre_crop")), load_image(path, 128))


def test_decoding_rejects_unknown_values_and_defaults_agree_with_the_schema():
    with pytest.raises(PipelineError, match="aspect"):
        Decoding(aspect="letterbox")
    with pytest.raises(PipelineError, match="colour_constancy"):
        Decoding(colour_constancy="grey_world")
    props = P.schema()["properties"]["images"]["properties"]
    assert Decoding() == Decoding(**{k: props[k]["default"] for k in ("aspect", "colour_constancy",
                                                                        "colour_constancy_p")})
    assert Decoding().changed() == {} and Decoding(aspect="centre_crop").changed() == {"aspect": "centre_crop"}
    assert Decoding(colour_constancy="shades_of_gray").changed() == {"colour_constancy": "shades_of_gray",
                                                                     "colour_constancy_p": 6}
    assert Decoding(colour_constancy_p=4) == Decoding() and Decoding(colour_constancy_p=4).changed() == {}


def test_params_schema_accepts_the_options_and_refuses_others():
    params = base_params()
    params["images"] = {**params["images"], "aspect": "centre_crop", "colour_constancy": "shades_of_gray",
                        "colour_constancy_p": 6}
    params["evaluate"] = {**(params.get("evaluate") or {}), "tta": "flips"}
    P.validate(params)
    for section, key, bad in (("images", "aspect", "pad"), ("images", "colour_constancy", "retinex"),
                              ("evaluate", "tta", "crops")):
        wrong = {**params, section: {**params[section], key: bad}}
        with pytest.raises(PipelineError, match=key):
            P.validate(wrong)


def _stage(make_raw, tmp_path, **options):
    raw = make_raw(records(8), name=f"raw-{len(options)}")
    params = base_params()
    params["images"] = {"size": 32, "shard_size": 16, "workers": 1, **options}
    table = tmp_path / f"metadata-{len(options)}.parquet"
    metadata.run(raw, table, params)
    out = tmp_path / f"shards-{len(options)}"
    images.run(table, raw, out, params)
    return raw, table, out


def test_images_stage_records_non_default_decoding_only(make_raw, tmp_path):
    raw, table, out = _stage(make_raw, tmp_path)
    assert "decoding" not in read_json(out / "summary.json")  # the defaults: summary bytes as before
    assert images.decoding_of(out) == Decoding()
    index = pd.read_parquet(out / "index.parquet")
    names = pd.read_parquet(table).set_index("isic_id")["image"]
    shard = np.load(out / "shard-00000.npy")
    first = index.iloc[0]
    assert np.array_equal(shard[first["row"]], _reference_load_image(raw / "images" / names[first["isic_id"]], 32))

    options = {"aspect": "centre_crop", "colour_constancy": "shades_of_gray"}
    raw2, table2, out2 = _stage(make_raw, tmp_path, **options)
    assert read_json(out2 / "summary.json")["decoding"] == {**options, "colour_constancy_p": 6}
    assert images.decoding_of(out2) == Decoding(**options)
    index2 = pd.read_parquet(out2 / "index.parquet")
    first2 = index2.iloc[0]
    names2 = pd.read_parquet(table2).set_index("isic_id")["image"]
    assert np.array_equal(np.load(out2 / "shard-00000.npy")[first2["row"]],
                          load_image(raw2 / "images" / names2[first2["isic_id"]], 32, decoding=Decoding(**options)))


# ---------------------------------------------------------------------------------------------------------
# the bundle and predict


@pytest.fixture(scope="module")
def position_cnn(tmp_path_factory):
    """A tiny CNN whose score depends on where the bright pixels are (its dense layer weighs the left half
    of the image), so flips and crops change it: tested as predict and evaluate would see it."""
    from skinlesion import models

    folder = tmp_path_factory.mktemp("models") / "position_cnn"
    folder.mkdir()
    cfg = variant({"name": "position_cnn", "kind": "cnn", "task": "binary", "filters": [2], "dense_units": 2})
    model = models.cnn(cfg, CNN_SIZE, seed=0)
    half = CNN_SIZE // 2
    for layer in model.layers:
        if not layer.weights:
            continue
        kernel, bias = layer.get_weights()
        if layer.name == "dense":  # flatten of (16, 16, 2): weight the left columns and the top rows
            w = np.zeros((half, half, 2), np.float32)
            w[:, : half // 2] = 1.0
            w[: half // 4] += 0.5
            kernel = np.repeat((w.reshape(-1, 1) / w.sum()), kernel.shape[1], axis=1)
            bias = np.zeros_like(bias)
        elif layer.name == "output":
            kernel, bias = np.full_like(kernel, 4.0), np.full_like(bias, -2.0)
        else:
            kernel, bias = np.full_like(kernel, 1.0 / int(np.prod(kernel.shape[:-1]))), np.zeros_like(bias)
        layer.set_weights([kernel, bias])
    model.save(folder / "model.keras")
    bundle.seal(folder, bundle.manifest(
        cfg, input_size=CNN_SIZE, imputation_means={}, training_data={"source": "local"},
        weights={"source": "fixed by hand", "imagenet": None}))
    return folder


@pytest.fixture(scope="module")
def lopsided(tmp_path_factory):
    """Photos bright on one side, wider than tall, with a colour cast: crops, flips and colour change them."""
    folder = tmp_path_factory.mktemp("lopsided")
    rng = np.random.default_rng(5)
    for i in range(3):
        image = np.zeros((60, 100, 3), np.uint8)
        image[:, :18] = (250, 120, 60)  # a bright band the centre crop removes
        image[5:30, 20:60] = rng.integers(60, 200, (25, 40, 3), dtype=np.uint8)
        image[30 + 5 * i:, 60:] = (200, 90, 40)
        Image.fromarray(image).save(folder / f"ISIC_000000{i}.png")
    return folder


def test_train_manifest_records_decoding_only_when_not_default():
    cfg = variant({"name": "c", "kind": "cnn", "task": "binary"})
    args = dict(input_size=32, imputation_means={}, training_data={}, weights={})
    plain = bundle.manifest(cfg, **args)
    assert plain == bundle.manifest(cfg, decoding=Decoding(), **args)  # the defaults: the same bundle.json
    assert set(plain["input"]) == {"image_size", "resize", "pixels"}
    sog = bundle.manifest(cfg, decoding=Decoding(colour_constancy="shades_of_gray", aspect="centre_crop"), **args)
    assert sog["input"]["colour_constancy"] == "shades_of_gray" and sog["input"]["aspect"] == "centre_crop"


def _with_input(src, dest, **fields):
    info = read_json(src / bundle.MANIFEST)
    info["input"].update(fields)
    dest.mkdir(parents=True)
    (dest / "model.keras").write_bytes((src / "model.keras").read_bytes())
    bundle.seal(dest, info)
    return dest


def test_predict_decodes_as_the_bundle_says(position_cnn, lopsided, tmp_path):
    options = {"colour_constancy": "shades_of_gray", "aspect": "centre_crop"}
    sog = _with_input(position_cnn, tmp_path / "sog", **options)
    assert Bundle(sog).decoding == Decoding(**options) and Bundle(position_cnn).decoding == Decoding()
    files = sorted(lopsided.glob("*.png"))
    frame = prediction.run(sog, [lopsided], tmp_path / "p.csv").set_index("path").loc[[str(f) for f in files]]
    decoded = np.stack([load_image(f, CNN_SIZE, decoding=Decoding(**options)) for f in files])
    expected = Bundle(sog).predict(None, decoded)
    np.testing.assert_allclose(frame["p_malignant"], expected, atol=1e-6)
    # and not what the default decoding gives: the options made a difference the test can see
    plain = Bundle(position_cnn).predict(None, np.stack([load_image(f, CNN_SIZE) for f in files]))
    assert np.max(np.abs(plain - expected)) > 0.01, (plain, expected)
    old = prediction.run(position_cnn, [lopsided], tmp_path / "q.csv").set_index("path").loc[[str(f) for f in files]]
    np.testing.assert_allclose(old["p_malignant"], plain, atol=1e-6)  # a bundle without the fields: defaults


# ---------------------------------------------------------------------------------------------------------
# test-time augmentation


def test_tta_flips_is_the_mean_of_the_four_flips(position_cnn, lopsided):
    trained = Bundle(position_cnn)
    x = np.stack([load_image(f, CNN_SIZE) for f in sorted(lopsided.glob("*.png"))])
    views = [trained.predict(None, flipped(x, k)) for k in range(4)]
    tta = trained.predict(None, x, tta="flips")
    np.testing.assert_allclose(tta, np.mean(views, axis=0), atol=1e-7)
    assert np.max(np.abs(tta - views[0])) > 0.01  # the model sees the flips differently: TTA changed the scores
    np.testing.assert_allclose(trained.predict(None, x, tta="none"), views[0], atol=0)
    assert np.array_equal(flipped(x, 3), x[:, ::-1, ::-1]) and np.array_equal(flipped(x, 1), x[:, :, ::-1])
    with pytest.raises(PipelineError, match="test-time"):
        trained.predict(None, x, tta="crops")


def test_predict_applies_the_decisions_tta(position_cnn, lopsided, tmp_path):
    files = sorted(lopsided.glob("*.png"))
    complete = Bundle(position_cnn).complete(tmp_path / "b", {"threshold": 0.5, "calibration": "none",
                                                             "temperature": 1.0, "tta": "flips"})
    assert Bundle(complete).tta == "flips" and Bundle(position_cnn).tta == "none"
    frame = prediction.run(complete, [lopsided], tmp_path / "p.csv").set_index("path").loc[[str(f) for f in files]]
    x = np.stack([load_image(f, CNN_SIZE) for f in files])
    expected = np.mean([Bundle(position_cnn).predict(None, flipped(x, k)) for k in range(4)], axis=0)
    np.testing.assert_allclose(frame["p_malignant"], expected, atol=1e-6)


def test_training_reuses_the_one_flip_helper():
    from skinlesion import training

    assert training.flipped is images.flipped and training.FLIPS == images.FLIPS


# ---------------------------------------------------------------------------------------------------------
# colour augmentation


def test_colour_augmentation_layers_and_records():
    from skinlesion import models

    plain = variant({"name": "t", "kind": "cnn", "task": "binary", "augment": {"flip": True, "rotation": 0.1}})
    assert plain.augment.record() == {"flip": True, "rotation": 0.1, "zoom": 0}  # as recorded before the options
    assert plain.as_dict()["augment"] == {"flip": True, "rotation": 0.1, "zoom": 0}
    jitter = variant({"name": "t", "kind": "cnn", "task": "binary",
                      "augment": {"flip": True, "brightness": 0.2, "contrast": 0.2, "saturation": 0.3, "hue": 0.05}})
    assert jitter.augmented and not jitter.flips_only  # the flip-once shortcut must not swallow colour jitter
    assert jitter.as_dict()["augment"]["brightness"] == 0.2
    only_colour = variant({"name": "t", "kind": "cnn", "task": "binary", "augment": {"flip": False, "contrast": 0.3}})
    assert only_colour.augmented and not only_colour.flips_only
    layers = models.augmentation(jitter.augment, seed=0)
    assert [layer.name for layer in layers] == ["aug_flip", "aug_brightness", "aug_contrast", "aug_saturation",
                                                "aug_saturation_clip", "aug_hue"]
    x = np.random.default_rng(0).uniform(40, 210, (8, 16, 16, 3)).astype("float32")
    y = x
    for layer in layers[1:]:
        y = np.asarray(layer(y, training=True))
        if layer.name != "aug_saturation":  # Keras' saturation leaves the range; the clip after it restores it
            assert y.min() >= 0 and y.max() <= 255, layer.name  # the uint8 range the preprocessing expects
    assert np.max(np.abs(y - x)) > 1  # it changed the colours
    z = x
    for layer in layers:
        z = np.asarray(layer(z, training=False))
    np.testing.assert_allclose(z, x, atol=1e-4)  # identity at inference


def test_a_model_with_colour_augmentation_saves_and_loads(tmp_path):
    import keras

    from skinlesion import models

    v = variant({"name": "t", "kind": "cnn", "task": "binary", "filters": [2], "dense_units": 2,
                 "augment": {"flip": False, "brightness": 0.1, "saturation": 0.2}})
    model = models.cnn(v, 16, seed=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# end to end: images stage -> external -> train -> evaluate -> predict, with every option on


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """synthetic fetch -> metadata -> images (centre_crop, Shades of Gray) -> external -> train a tiny CNN ->
    evaluate with and without test-time flips, in-process."""
    from conftest import lesion_image
    from skinlesion import evaluation, external, raw_layout, sources, training
    from test_external import external_records

    root = tmp_path_factory.mktemp("robust")
    ext_dir = root / "elsewhere"
    (ext_dir / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    recs = external_records(24)
    for r in recs:  # non-square, like HAM10000's 200 x 150
        image = lesion_image(rng, size=48, dark=r["diagnosis_1"] == "Malignant").resize((64, 48))
        image.save(ext_dir / "images" / f"{r['isic_id']}.jpg")
    raw_layout.write_metadata_csv([{"attribution": "Elsewhere", "copyright_license": "CC-0", **r} for r in recs],
                                  ext_dir / "metadata.csv")
    project = root / "project"
    project.mkdir()
    options = {"aspect": "centre_crop", "colour_constancy": "shades_of_gray", "colour_constancy_p": 6}
    params = {"seed": 5, "data": {"source": "synthetic", "synthetic": {"n_patients": 40, "image_size": 32}},
              "metadata": {}, "split": {"val": 0.25, "test": 0.25},
              "images": {"size": 32, "shard_size": 64, "workers": 1, **options},
              "train": {"learning_rate": 0.01, "batch_size": 16, "epochs": 1, "patience": 1},
              "evaluate": {"threshold": "youden", "bootstrap": 20, "gradcam_per_outcome": 0, "tta": "flips",
                           "external": [{"name": "elsewhere", "path": "../elsewhere", "layout": "isic-cli"}]},
              "variants": {"tiny": {"kind": "cnn", "task": "binary", "filters": [4], "dense_units": 4}}}
    P.validate(params)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        table, shards = "data/interim/metadata.parquet", "data/processed/shards"
        sources.fetch(params, "data/raw")
        metadata.run("data/raw", table, params)
        images.run(table, "data/raw", shards, params)
        external.run(params, "data/external", "data/interim/metadata_summary.json")
        training.run(params, "tiny", table, shards, "models/tiny")
        evaluation.run(params, "tiny", "models/tiny", table, shards, "results/tta", external_dir="data/external",
                       bundle_out="bundles/tta")
        plain = {**params, "evaluate": {**params["evaluate"], "tta": "none"}}
        evaluation.run(plain, "tiny", "models/tiny", table, shards, "results/plain", external_dir="data/external",
                       bundle_out="bundles/plain")
    finally:
        os.chdir(cwd)
    return project, options


def test_options_travel_from_the_images_stage_to_the_bundle(pipeline):
    project, options = pipeline
    assert read_json(project / "data/processed/shards/summary.json")["decoding"] == options
    assert images.decoding_of(project / "data/external/elsewhere/shards") == Decoding(**options)
    for folder in ("models/tiny", "bundles/tta", "bundles/plain"):
        assert Bundle(project / folder).decoding == Decoding(**options), folder
    assert Bundle(project / "bundles/tta").tta == "flips" and Bundle(project / "bundles/plain").tta == "none"
    assert "tta" not in read_json(project / "bundles/plain/bundle.json")["decision"]
    assert read_json(project / "results/tta/evaluation.json")["tta"] == "flips"
    assert "tta" not in read_json(project / "results/plain/evaluation.json")


def test_evaluate_tta_scores_every_set_as_the_mean_of_the_flips(pipeline):
    project, _ = pipeline
    tta = pd.read_csv(project / "results/tta/predictions.csv")
    plain = pd.read_csv(project / "results/plain/predictions.csv")
    assert tta["split"].tolist() == plain["split"].tolist()
    assert set(tta["split"]) == {"val", "test", "external:elsewhere"}  # validation too: the threshold's scores
    assert np.max(np.abs(tta["p_malignant"] - plain["p_malignant"])) > 1e-4  # the flips changed the scores
    from skinlesion import dataset

    from skinlesion.evaluation import external_split

    trained = Bundle(project / "models/tiny")
    splits = dataset.load_splits(project / "data/interim/metadata.parquet", project / "data/processed/shards",
                                 trained.task)
    sets = {"val": splits["val"], "test": splits["test"],
            "external:elsewhere": external_split(project / "data/external", "elsewhere", trained.task)}
    for name, split in sets.items():
        x = split.images()
        expected = np.mean([trained.predict(split.table, flipped(x, k)) for k in range(4)], axis=0)
        rows = tta[tta["split"] == name].set_index("isic_id")
        got = rows.loc[split.table["isic_id"], "p_malignant"]
        np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=name)
        assert np.max(np.abs(expected - trained.predict(split.table, x))) > 1e-5, name  # TTA moved this set


def test_predict_scores_a_file_as_evaluate_scored_it(pipeline, tmp_path):
    """A raw external image given to predict: decoded with the bundle's options, scored with its TTA, it gets
    the score evaluate gave it (the external stage decoded it from the same file with the same options)."""
    project, _ = pipeline
    files = sorted((project.parent / "elsewhere" / "images").glob("*.jpg"))[:6]
    for kind in ("tta", "plain"):
        frame = prediction.run(project / "bundles" / kind, files, tmp_path / f"{kind}.csv").set_index("isic_id")
        scored = pd.read_csv(project / f"results/{kind}/predictions.csv").set_index("isic_id")
        ids = [f.stem for f in files if f.stem in scored.index]
        assert len(ids) >= 4
        np.testing.assert_allclose(frame.loc[ids, "p_malignant"], scored.loc[ids, "p_malignant"], atol=2e-6)


def test_evaluate_refuses_external_images_decoded_otherwise(pipeline):
    from skinlesion.evaluation import check_decoding

    project, _ = pipeline
    trained = Bundle(project / "models/tiny")
    check_decoding(trained, project / "data/external/elsewhere/shards", "external set elsewhere")  # same: fine
    other = project / "other_shards"
    other.mkdir(exist_ok=True)
    write_json(other / "summary.json", {"images": 0})  # decoded with the defaults
    with pytest.raises(PipelineError, match="decoded with"):
        check_decoding(trained, other, "external set other")


def test_recalibrate_scores_the_local_set_as_predict_does(position_cnn, make_raw, tmp_path):
    """recalibrate decodes the labelled set with the bundle's options and scores it with its TTA, as predict."""
    from skinlesion import recalibration

    options = {"colour_constancy": "shades_of_gray", "aspect": "centre_crop"}
    sog = _with_input(position_cnn, tmp_path / "sog", **options)
    complete = Bundle(sog).complete(tmp_path / "complete", {"threshold": 0.5, "calibration": "none",
                                                           "temperature": 1.0, "tta": "flips"})
    clinic = make_raw(records(6), name="clinic")
    rng = np.random.default_rng(7)
    for i, path in enumerate(sorted((clinic / "images").glob("*.jpg"))):  # lopsided, wide: crop and flips matter
        image = np.zeros((48, 80, 3), np.uint8)
        image[:, :14] = (250, 120, 60)
        image[4:24, 16:48] = rng.integers(60, 200, (20, 32, 3), dtype=np.uint8)
        image[24 + i % 5 * 4:, 48:] = (200, 90, 40)
        Image.fromarray(image).save(path, quality=95)
    data = recalibration.read_local(Bundle(complete), clinic)
    files = sorted((clinic / "images").glob("*.jpg"))
    scores = prediction.run(complete, files, tmp_path / "p.csv")["p_malignant"].to_numpy()
    plain = Bundle(position_cnn).predict(None, np.stack([load_image(f, CNN_SIZE) for f in files]))
    assert len(data.raw) >= len(files) - 4  # rows the metadata cleaning drops (a missing sex) are not scored
    for value in data.raw:  # every case recalibrate scored has predict's score for its file ...
        assert np.min(np.abs(scores - value)) < 1e-6, (value, scores)
    assert np.max(np.abs(np.sort(plain)[: len(data.raw)] - np.sort(data.raw))) > 0.01  # ... not the defaults'
    out = tmp_path / "recal"
    recalibration.run(complete, clinic, out, 0.9, n_boot=20, k=2)
    assert Bundle(out).tta == "flips" and Bundle(out).decoding == Decoding(**options)  # kept for predict
