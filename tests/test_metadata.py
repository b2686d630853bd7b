import numpy as np
import pandas as pd
import pytest

from skinlesion import labels, metadata, splits
from skinlesion.errors import PipelineError

from conftest import base_params, records


def test_labels_follow_the_archive_vocabulary():
    d1 = pd.Series(["Benign", "Malignant", "Malignant", "Malignant", "Indeterminate", None, "Malignant"], dtype="string")
    d3 = pd.Series(["Nevus", "Basal cell carcinoma", "Melanoma metastasis", "Squamous cell carcinoma, Invasive",
                    "Solar or actinic keratosis", None, "Keratoacanthoma"], dtype="string")
    assert labels.binary_label(d1).tolist()[:4] == [0, 1, 1, 1]
    assert pd.isna(labels.binary_label(d1)[4]) and pd.isna(labels.binary_label(d1)[5])
    assert labels.binary_label(d1, "malignant")[4] == 1
    multi = labels.multiclass_label(d1, d3)
    names = [labels.CLASSES[int(i)] if pd.notna(i) else None for i in multi]
    assert names == ["benign", "basal_cell_carcinoma", "melanoma_metastasis", "squamous_cell_carcinoma", None, None, None]


def test_build_counts_every_dropped_row(make_raw):
    rows = records(30)
    rows.append({**rows[0], "isic_id": "ISIC_9999990", "patient_id": "IP_9999990", "diagnosis_1": "Indeterminate"})
    raw = make_raw(rows)
    # a metadata row whose image is missing
    (raw / "images" / "ISIC_0000010.jpg").unlink()
    frame, summary = metadata.build(raw, base_params())
    assert summary["rows_in"] == 61
    assert summary["dropped"] == {
        "no image file in raw/images": 1,
        "diagnosis_1 Indeterminate (metadata.indeterminate: exclude)": 1,
        "sex missing (metadata.drop_missing_sex)": 2,
    }
    assert summary["rows_out"] == len(frame) == 61 - 4
    assert set(frame["split"]) == {"train", "val", "test"}


def test_split_never_puts_a_patient_on_two_sides(make_raw):
    frame, _ = metadata.build(make_raw(records(60)), base_params())
    sides = frame.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()
    shares = frame["split"].value_counts(normalize=True)
    assert 0.05 < shares["test"] < 0.3 and 0.05 < shares["val"] < 0.3
    # stratified: every split has malignant cases
    assert (frame.groupby("split")["label"].sum() > 0).all()


def test_group_falls_back_from_patient_to_lesion_to_image():
    frame = pd.DataFrame({"isic_id": ["a", "b", "c"], "patient_id": ["P1", None, None], "lesion_id": ["L1", "L2", None]})
    assert splits.group_ids(frame).tolist() == ["P1", "L2", "c"]


def test_imputation_uses_train_means_only_and_keeps_indicators(make_raw):
    raw = make_raw(records(60))
    frame, summary = metadata.build(raw, base_params())
    original = metadata.typed(pd.read_csv(raw / "metadata.csv", dtype=str, keep_default_na=False, na_values=[""]))
    original = original.set_index("isic_id").loc[frame["isic_id"]]
    train = (frame["split"] == "train").to_numpy()
    expected = original["age_approx"][train].mean()
    assert summary["imputation_means_train"]["age_approx"] == pytest.approx(expected, abs=1e-6)
    missing = frame["age_approx_missing"].to_numpy()
    assert missing.any()
    assert np.allclose(frame.loc[missing, "age_approx"], expected)
    assert frame["age_approx"].notna().all()


def test_no_usable_rows_is_one_clear_error(make_raw):
    rows = [{**r, "diagnosis_1": "Indeterminate"} for r in records(5)]
    with pytest.raises(PipelineError, match="no usable rows"):
        metadata.build(make_raw(rows), base_params())


def test_run_writes_parquet_and_summary(make_raw, tmp_path):
    out = tmp_path / "interim" / "metadata.parquet"
    metadata.run(make_raw(records(30)), out, base_params())
    table = pd.read_parquet(out)
    assert {"isic_id", "split", "label", "label_multiclass", "group", "age_approx_missing"} <= set(table.columns)
    assert (tmp_path / "interim" / "metadata_summary.json").exists()
