"""`skinlesion predict`: new image files scored exactly as evaluate scores the test set."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from skinlesion import cli, prediction, raw_layout, raw_packs  # noqa: E402
from skinlesion.bundle import Bundle  # noqa: E402
from skinlesion.calibration import apply_temperature  # noqa: E402
from skinlesion.images import load_image  # noqa: E402
from skinlesion.io import read_json  # noqa: E402
from conftest import CNN_SIZE  # noqa: E402

SIZE = CNN_SIZE  # the cnn_dir fixture (conftest)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder as a user has one: JPEG and PNG of other sizes, a subfolder, a corrupt file, non-images."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)  # dark, middling and bright noise: three clearly different scores
    Image.fromarray(rng.integers(0, 80, (60, 80, 3), dtype=np.uint8)).save(folder / "ISIC_0000001.jpg", quality=90)
    Image.fromarray(rng.integers(90, 170, (40, 40, 3), dtype=np.uint8)).save(folder / "ISIC_0000002.png")
    (folder / "more").mkdir()
    Image.fromarray(rng.integers(180, 255, (50, 50), dtype=np.uint8)).save(folder / "more" / "ISIC_0000003.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG at all")
    (folder / "notes.txt").write_text("not an image, not listed")
    (folder / ".hidden.jpg").write_bytes(b"ignored")
    return folder


def _good(photos):
    return sorted([photos / "ISIC_0000001.jpg", photos / "ISIC_0000002.png", photos / "more" / "ISIC_0000003.png"])


def _expected(model_dir, files):
    return Bundle(model_dir).predict(None, np.stack([load_image(f, SIZE) for f in files]))


def _complete(model_dir, tmp_path, threshold, calibration="none", temperature=1.0):
    """The complete bundle evaluate writes: the model with its decision chosen on validation."""
    return Bundle(model_dir).complete(tmp_path / "bundle", {"threshold": threshold, "calibration": calibration,
                                                            "temperature": temperature})


def test_folder_with_a_corrupt_file_is_scored_and_the_file_reported(cnn_dir, photos, tmp_path, caplog):
    raw = _expected(cnn_dir, _good(photos))
    assert raw[0] + 0.05 < raw[1] < raw[2] - 0.05, raw  # the fixture's scores follow brightness
    threshold = float(np.sort(raw)[:2].mean())  # between the two lowest: one benign, two malignant
    out = tmp_path / "pred.csv"
    with caplog.at_level(logging.WARNING):
        frame = prediction.run(_complete(cnn_dir, tmp_path, threshold), [photos], out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["isic_id", "path", "p_benign", "p_malignant", "predicted", "error"]
    assert len(written) == 4 and len(frame) == 4  # three images and the corrupt one; .txt and hidden files skipped
    bad = written[written["isic_id"] == "broken"].iloc[0]
    assert bad["error"].startswith("OSError: unreadable image") and pd.isna(bad["p_malignant"]) and pd.isna(bad["predicted"])
    assert any("broken.jpg" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    good = written[written["error"].isna()].set_index("path").loc[[str(f) for f in _good(photos)]]
    np.testing.assert_allclose(good["p_malignant"], raw, atol=1e-6)
    np.testing.assert_allclose(good["p_benign"] + good["p_malignant"], 1.0, atol=1e-6)
    expected_class = np.where(raw >= threshold, "malignant", "benign")
    assert good["predicted"].tolist() == expected_class.tolist()
    assert sorted(expected_class.tolist()) == ["benign", "malignant", "malignant"]


def test_a_bundle_without_a_decision_uses_05_with_a_warning(cnn_dir, photos, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):  # models/<variant>: train's bundle, before evaluate chose a threshold
        frame = prediction.run(cnn_dir, [photos / "ISIC_0000002.png"], tmp_path / "p.csv")
    assert "threshold 0.5" in caplog.text and "bundles/tiny_cnn" in caplog.text
    p = frame["p_malignant"].iloc[0]
    assert frame["predicted"].iloc[0] == ("malignant" if p >= 0.5 else "benign")


def test_temperature_from_evaluation_is_applied(cnn_dir, photos, tmp_path):
    files = _good(photos)
    frame = prediction.run(_complete(cnn_dir, tmp_path, 0.5, "temperature", 2.5), files, tmp_path / "p.csv")
    np.testing.assert_allclose(frame["p_malignant"], apply_temperature(_expected(cnn_dir, files), 2.5), atol=1e-6)


def test_missing_file_and_gradcam_overlays(cnn_dir, photos, tmp_path):
    cams = tmp_path / "cams"
    frame = prediction.run(_complete(cnn_dir, tmp_path, 0.5), [photos / "ISIC_0000001.jpg", tmp_path / "absent.jpg",
                                                                 photos], tmp_path / "p.csv", gradcam_dir=cams)
    assert "file not found" in frame.set_index("isic_id").loc["absent", "error"]
    # ISIC_0000001 was given twice (as a file and inside the folder): both rows, both overlays.
    assert sorted(p.name for p in cams.iterdir()) == ["ISIC_0000001-2.png", "ISIC_0000001.png",
                                                      "ISIC_0000002.png", "ISIC_0000003.png"]
    assert Image.open(cams / "ISIC_0000002.png").size[0] > 100


def test_cli_exit_codes(cnn_dir, photos, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    assert cli.main(["predict", str(cnn_dir), str(photos), "-o", str(out)]) == 0
    assert len(pd.read_csv(out)) == 4
    assert cli.main(["predict", str(cnn_dir), str(photos / "broken.jpg"), "-o", str(out)]) == 1  # nothing scored
    assert cli.main(["predict", str(tmp_path), str(photos), "-o", str(out)]) == 2
    assert "is not a model bundle" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# A metadata model: imputation exactly as in training


@pytest.fixture(scope="module")
def metadata_run(tmp_path_factory):
    from skinlesion import metadata, sources, training

    root = tmp_path_factory.mktemp("run")
    params = {"seed": 3, "data": {"source": "synthetic", "synthetic": {"n_patients": 40, "image_size": 32,
                                                                       "missing_fraction": 0.3}},
              "metadata": {}, "split": {"val": 0.25, "test": 0.25}, "images": {"size": 32},
              "train": {"epochs": 1}, "evaluate": {},
              "variants": {"lr": {"kind": "logreg", "task": "binary"}}}
    sources.fetch(params, root / "raw")
    metadata.run(root / "raw", root / "interim" / "metadata.parquet", params)
    training.run(params, "lr", root / "interim" / "metadata.parquet", None, root / "models" / "lr",
                 summary_path=root / "interim" / "metadata_summary.json")
    return root


def test_metadata_variant_imputes_with_the_train_means(metadata_run, tmp_path):
    root = metadata_run
    table = pd.read_parquet(root / "interim" / "metadata.parquet")
    assert table["age_approx_missing"].any() or table["clin_size_long_diam_mm_missing"].any()
    summary = root / "interim" / "metadata_summary.json"
    raw_packs.unpack(root / "raw", tmp_path / "raw", raw_layout.IMAGE_SUFFIXES)  # predict reads image folders
    frame = prediction.run(root / "models" / "lr", [tmp_path / "raw"], tmp_path / "p.csv",
                           metadata=root / "raw" / "metadata.csv")
    assert frame["error"].isna().all()
    scored = frame.set_index("isic_id").loc[table["isic_id"], "p_malignant"].to_numpy()
    np.testing.assert_allclose(scored, Bundle(root / "models" / "lr").predict(table), atol=1e-6)
    # the bundle records the means the metadata stage fitted on train, and they fill the table's gaps
    recorded = Bundle(root / "models" / "lr").imputation_means
    assert recorded == read_json(summary)["imputation_means_train"]
    for column, mean in recorded.items():
        observed = table[(table["split"] == "train") & ~table[f"{column}_missing"]][column]
        assert mean == pytest.approx(observed.mean(), abs=1e-5)


def test_metadata_variant_needs_metadata_and_reports_missing_rows(metadata_run, tmp_path, photos):
    model = metadata_run / "models" / "lr"
    assert cli.main(["predict", str(model), str(photos), "-o", str(tmp_path / "x.csv")]) == 2
    frame = prediction.run(model, [photos / "ISIC_0000001.jpg"], tmp_path / "p.csv",
                           metadata=metadata_run / "raw" / "metadata.csv")
    assert "no row for isic_id ISIC_0000001" in frame["error"].iloc[0]
    # No files at all: every metadata row is scored.
    every = prediction.run(model, [], tmp_path / "all.csv", metadata=metadata_run / "raw" / "metadata.csv")
    assert len(every) == len(pd.read_csv(metadata_run / "raw" / "metadata.csv"))


def test_a_copied_bundle_scores_alone_the_same_and_an_incomplete_copy_is_a_clear_error(metadata_run, tmp_path,
                                                                                      monkeypatch, caplog):
    """The bundle is everything scoring needs: copied away from the run (no data/, no results/ beside it, another
    working folder) it scores every row exactly as in place; without its model file it says so."""
    import shutil

    from skinlesion.errors import PipelineError

    metadata_csv = metadata_run / "raw" / "metadata.csv"
    here = prediction.run(metadata_run / "models" / "lr", [], tmp_path / "here.csv", metadata=metadata_csv)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(metadata_run / "models" / "lr", elsewhere / "lr")
    monkeypatch.chdir(elsewhere)
    with caplog.at_level(logging.WARNING):
        there = prediction.run("lr", [], "there.csv", metadata=metadata_csv)
    assert "SYNTHETIC" in caplog.text  # trained on the synthetic self-test data: said, not hidden
    pd.testing.assert_frame_equal(here, there)
    (elsewhere / "lr" / "model.npz").unlink()
    with pytest.raises(PipelineError, match="incomplete"):
        prediction.run("lr", [], "none.csv", metadata=metadata_csv)


def test_predict_reads_ages_as_training_and_external_sets_do(tmp_path):
    """Exact ages go to the archive's 5-year steps (as the local source reads them for training and for
    external sets), so a case scores the same in predict as in evaluate; a negative age is missing."""
    from skinlesion.prediction import prepare_metadata

    csv = tmp_path / "metadata.csv"
    csv.write_text("isic_id,age_approx,sex\nISIC_0000001,42,male\nISIC_0000002,88,female\n"
                   "ISIC_0000003,-3,male\nISIC_0000004,,female\nISIC_0000005,45,male\n")
    frame = prepare_metadata(csv, {"age_approx": 52.5})
    assert frame["age_approx"].tolist() == [40.0, 85.0, 52.5, 52.5, 45.0]
    assert frame["age_approx_missing"].tolist() == [False, False, True, True, False]
