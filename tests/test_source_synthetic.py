"""The synthetic source: raw layout, determinism, labels, groups, missing cells and the planted signal."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinlesion import labels, raw_layout
from skinlesion.errors import PipelineError
from skinlesion.io import read_json
from skinlesion.sources import fetch as fetch_source
from skinlesion.sources import synthetic
from skinlesion.sources.synthetic import cohort

DEFAULT = {"n_patients": 240, "images_per_patient": [1, 3], "malignant_fraction": 0.3, "image_size": 160,
           "missing_fraction": 0.05}  # params.yaml's data.synthetic
SMALL = {"n_patients": 30, "images_per_patient": [1, 4], "malignant_fraction": 0.4, "image_size": 64,
         "missing_fraction": 0.1}
FIELDS = ["age_approx", "sex", "anatom_site_1", "clin_size_long_diam_mm"]


@pytest.fixture(scope="module")
def default_raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "raw"
    # CPU seconds of this (single-threaded) generation, not wall-clock: a busy shared CI machine must
    # not count against it.
    started = time.process_time()
    summary = synthetic.fetch(dict(DEFAULT), out, seed=42)
    return out, summary, time.process_time() - started


@pytest.fixture(scope="module")
def default_meta(default_raw):
    return raw_layout.read_metadata(default_raw[0])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_raw_layout_and_archive_field_names(default_raw, default_meta):
    out, summary, _ = default_raw
    meta = default_meta
    assert sorted(p.name for p in out.iterdir()) == ["attribution.txt", "images", "licenses", "metadata.csv"]
    header = (out / "metadata.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["isic_id", "attribution", "copyright_license"]
    assert header[3:] == sorted(header[3:])
    for column in ["age_approx", "sex", "anatom_site_1", "clin_size_long_diam_mm", "diagnosis_1", "diagnosis_2",
                   "diagnosis_3", "patient_id", "lesion_id", "image_type"]:
        assert column in header
    assert not {"benign_malignant", "diagnosis", "target", "anatom_site_general"} & set(header)

    images = raw_layout.image_files(out)
    assert set(images) == set(meta["isic_id"]) and len(meta) == meta["isic_id"].nunique()
    assert all(ref.name.endswith(".jpg") and not ref.packed for ref in images.values())
    assert meta["isic_id"].str.fullmatch(r"ISIC_\d{7}").all()
    assert meta["patient_id"].str.fullmatch(r"IP_\d{7}").all()
    assert meta["lesion_id"].str.fullmatch(r"IL_\d{7}").all()
    assert (meta["copyright_license"] == "CC-0").all() and (meta["image_type"] == "dermoscopic").all()
    assert (out / "attribution.txt").read_text() == cohort.ATTRIBUTION  # isic-cli: no newline at the end
    assert [p.name for p in (out / "licenses").iterdir()] == ["CC-0.txt"]

    ages = pd.to_numeric(meta["age_approx"]).dropna()
    assert (ages % 5 == 0).all() and ages.max() <= 85 and ages.min() >= 0
    assert set(meta["sex"].dropna()) == {"male", "female"}
    assert set(meta["anatom_site_1"].dropna()) <= set(cohort.SITES)
    assert (pd.to_numeric(meta["clin_size_long_diam_mm"]).dropna() > 0).all()

    with Image.open(next(iter(images.values())).fp()) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (160, 160)
    assert summary["patients"] == 240 and sum(summary["diagnosis_1"].values()) == len(meta)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    synthetic.fetch(dict(SMALL), tmp_path / "a", seed=7)
    synthetic.fetch(dict(SMALL), tmp_path / "b", seed=7)
    synthetic.fetch(dict(SMALL), tmp_path / "c", seed=8)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert len(a) > 30 and a == b
    assert a["metadata.csv"] != c["metadata.csv"]
    assert set(a) != set(c)


def test_labels_through_labels_module(default_meta):
    meta = default_meta
    binary = labels.binary_label(meta["diagnosis_1"], "exclude")
    multi = labels.multiclass_label(meta["diagnosis_1"], meta["diagnosis_3"])
    names = multi.dropna().map(dict(enumerate(labels.CLASSES)))
    counts = names.value_counts()
    assert set(counts.index) == set(labels.CLASSES), counts
    assert counts.drop("benign").min() >= 8, counts  # every malignant class has enough images
    share = binary.dropna().mean()
    assert 0.2 <= share <= 0.45, share  # imbalanced as in the archive, yet enough malignant
    assert binary.sum() >= 80

    # Indeterminate rows exist and are excluded by default, counted malignant when asked
    indeterminate = meta["diagnosis_1"] == "Indeterminate"
    assert 3 <= indeterminate.sum() <= 0.1 * len(meta)
    assert binary[indeterminate].isna().all()
    assert (labels.binary_label(meta["diagnosis_1"], "malignant")[indeterminate] == 1).all()
    # out-of-scope malignant rows: binary malignant, outside the five classes
    out_of_scope = meta["diagnosis_3"] == "Keratoacanthoma"
    assert out_of_scope.sum() >= 1
    assert (binary[out_of_scope] == 1).all() and multi[out_of_scope].isna().all()
    # every other row has a five-class label; benign ones spread over several diagnosis_3
    assert multi[~indeterminate & ~out_of_scope].notna().all()
    benign_d3 = meta.loc[meta["diagnosis_1"] == "Benign", "diagnosis_3"].value_counts()
    assert {"Nevus", "Seborrheic keratosis", "Dermatofibroma"} <= set(benign_d3.index)
    assert benign_d3.index[0] == "Nevus"
    melanoma_d3 = set(meta.loc[names.reindex(meta.index) == "melanoma", "diagnosis_3"])
    assert melanoma_d3 == {"Melanoma Invasive", "Melanoma in situ", "Melanoma, NOS"}


def test_patients_lesions_and_photographs(default_meta):
    meta = default_meta
    per_patient = meta.groupby("patient_id")
    assert per_patient.size().between(1, 3).all()
    assert per_patient["lesion_id"].nunique().isin([1, 2]).all()
    assert (per_patient["lesion_id"].nunique() == 2).sum() > 10
    assert (meta.groupby("lesion_id")["patient_id"].nunique() == 1).all()
    assert (meta.groupby("lesion_id").size() > 1).sum() > 20  # lesions photographed several times
    for column in ["diagnosis_3", "clin_size_long_diam_mm", "anatom_site_1"]:
        assert (meta.groupby("lesion_id")[column].nunique(dropna=False) == 1).all(), column
    for column in ["age_approx", "sex"]:
        assert (per_patient[column].nunique(dropna=False) == 1).all(), column
    malignant_patients = meta.groupby("patient_id")["diagnosis_1"].agg(lambda s: (s == "Malignant").any())
    assert malignant_patients.sum() == round(240 * 0.3)


def test_photographs_of_one_lesion_vary_but_stay_alike(default_raw, default_meta):
    out, meta = default_raw[0], default_meta
    multi = meta.groupby("lesion_id").filter(lambda g: len(g) >= 2).groupby("lesion_id")["isic_id"].apply(list)
    same, other = [], []
    ids = list(multi.items())[:20]
    for k, (lesion, isic_ids) in enumerate(ids):
        a, b = (np.asarray(Image.open(out / "images" / f"{i}.jpg"), np.float32) for i in isic_ids[:2])
        assert not np.array_equal(a, b)  # a new shift / rotation / light each time
        c = np.asarray(Image.open(out / "images" / f"{ids[(k + 1) % len(ids)][1][0]}.jpg"), np.float32)
        same.append(np.abs(np.sort(a.ravel()) - np.sort(b.ravel())).mean())
        other.append(np.abs(np.sort(a.ravel()) - np.sort(c.ravel())).mean())
    assert np.median(same) < np.median(other)


def test_missing_cells(tmp_path, default_meta):
    for column in FIELDS:
        share = default_meta[column].isna().mean()
        assert 0.01 <= share <= 0.12, (column, share)
    cfg = {**SMALL, "n_patients": 120, "image_size": 32}
    synthetic.fetch({**cfg, "missing_fraction": 0.0}, tmp_path / "none", seed=1)
    synthetic.fetch({**cfg, "missing_fraction": 0.4}, tmp_path / "many", seed=1)
    none = raw_layout.read_metadata(tmp_path / "none")
    many = raw_layout.read_metadata(tmp_path / "many")
    assert none[FIELDS].notna().all().all()
    for column in FIELDS:
        assert 0.25 <= many[column].isna().mean() <= 0.55, column
    assert many[["diagnosis_1", "patient_id", "lesion_id"]].notna().all().all()


def _crude_features(path: Path) -> np.ndarray:
    """Mean colour, colour spread, dark area and bluish area of the central part of an image."""
    a = np.asarray(Image.open(path).convert("RGB"), np.float32)
    h, w = a.shape[:2]
    c = a[h // 6: -h // 6, w // 6: -w // 6].reshape(-1, 3)
    return np.r_[c.mean(0), c.std(0), (c.mean(1) < 90).mean(), (c[:, 2] > c[:, 0]).mean()]


def _patient_split(meta: pd.DataFrame, seed: int = 0) -> np.ndarray:
    patients = np.array(sorted(meta["patient_id"].unique()))
    rng = np.random.default_rng(seed)
    test = set(rng.choice(patients, len(patients) // 3, replace=False))
    return meta["patient_id"].isin(test).to_numpy()


def test_planted_signal_in_images(default_raw, default_meta):
    out, meta = default_raw[0], default_meta
    y = labels.binary_label(meta["diagnosis_1"])
    keep = y.notna().to_numpy()
    meta, y = meta[keep].reset_index(drop=True), y[keep].astype(int).to_numpy()
    X = np.stack([_crude_features(out / "images" / f"{i}.jpg") for i in meta["isic_id"]])
    test = _patient_split(meta)

    def held_out_auc(target):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(X[~test], target[~test])
        return roc_auc_score(target[test], model.predict_proba(X[test])[:, 1])

    assert held_out_auc(y) > 0.8
    # shuffled at the patient level, the same features find nothing: the signal is in the labels' images
    patient_label = meta.groupby("patient_id").size().index
    rng = np.random.default_rng(3)
    shuffled = dict(zip(patient_label, rng.permutation(
        meta.groupby("patient_id")["diagnosis_1"].first().eq("Malignant").astype(int).to_numpy())))
    assert held_out_auc(meta["patient_id"].map(shuffled).to_numpy()) < 0.65


def test_five_classes_look_different(default_raw, default_meta):
    out, meta = default_raw[0], default_meta
    y = labels.multiclass_label(meta["diagnosis_1"], meta["diagnosis_3"])
    keep = y.notna().to_numpy()
    meta, y = meta[keep].reset_index(drop=True), y[keep].astype(int).to_numpy()
    X = np.stack([_crude_features(out / "images" / f"{i}.jpg") for i in meta["isic_id"]])
    test = _patient_split(meta)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    model.fit(X[~test], y[~test])
    assert balanced_accuracy_score(y[test], model.predict(X[test])) > 0.5  # chance: 0.2


def test_planted_signal_in_metadata(default_meta):
    meta = default_meta
    malignant = meta["diagnosis_1"] == "Malignant"
    benign = meta["diagnosis_1"] == "Benign"
    age = pd.to_numeric(meta["age_approx"])
    size = pd.to_numeric(meta["clin_size_long_diam_mm"])
    assert age[malignant].mean() > age[benign].mean() + 10
    assert size[malignant].mean() > size[benign].mean() * 1.3
    assert age[malignant].min() < age[benign].max()  # overlapping, not separable by a threshold
    assert size[malignant].min() < size[benign].max()


def test_speed(default_raw):
    _, summary, seconds = default_raw
    assert seconds < 20, f"{sum(summary['diagnosis_1'].values())} images took {seconds:.1f} s"


def test_through_the_source_entry_point(tmp_path):
    params = {"seed": 3, "data": {"source": "synthetic", "synthetic": {**SMALL, "n_patients": 12}}}
    fetch_source(params, tmp_path / "raw")
    info = read_json(tmp_path / "raw" / "source.json")
    assert info["source"] == "synthetic" and info["patients"] == 12
    assert info["images"] == len(raw_layout.read_metadata(tmp_path / "raw"))


@pytest.mark.parametrize("bad, message", [
    ({"images_per_patient": [3, 1]}, "images_per_patient"),
    ({"malignant_fraction": 1.0}, "malignant_fraction"),
    ({"n_patients": 1}, "n_patients"),
    ({"colour": "blue"}, "unknown option"),
])
def test_bad_options_are_pipeline_errors(tmp_path, bad, message):
    with pytest.raises(PipelineError, match=re.escape(message)):
        synthetic.fetch({**SMALL, **bad}, tmp_path / "raw", seed=0)
