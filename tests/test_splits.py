"""Split groups that cannot leak: connected components of patient_id and lesion_id, mixed and missing ids."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from skinlesion import metadata, splits

from conftest import base_params


def mixed_ids(n_lesions: int = 300, seed: int = 0) -> pd.DataFrame:
    """The archive's pattern: every lesion has 2-4 images, patient_id on some of them and not on others;
    some patients have several lesions; a few images carry neither id."""
    rng = np.random.default_rng(seed)
    rows = []
    for lesion in range(n_lesions):
        patient = lesion // 2 if lesion % 3 else lesion  # every other pair of lesions shares a patient
        malignant = lesion % 4 == 0
        for k in range(int(rng.integers(2, 5))):
            rows.append({
                "isic_id": f"ISIC_{lesion * 10 + k:07d}",
                "lesion_id": f"IL_{lesion:07d}",
                "patient_id": f"IP_{patient:07d}" if rng.random() < 0.5 else None,
                "label": int(malignant),
            })
    for i in range(20):
        rows.append({"isic_id": f"ISIC_{9_000_000 + i}", "lesion_id": None, "patient_id": None, "label": i % 2})
    return pd.DataFrame(rows)


def sides(frame: pd.DataFrame, split: pd.Series, column: str) -> pd.Series:
    known = frame[column].notna()
    return split[known].groupby(frame.loc[known, column]).nunique()


def test_a_lesion_with_patient_id_on_some_images_only_is_one_group():
    frame = pd.DataFrame({
        "isic_id": ["a", "b", "c", "d", "e", "f"],
        "patient_id": ["P1", None, None, "P1", None, None],
        "lesion_id": ["L1", "L1", "L2", "L3", None, "L4"],
    })
    groups = splits.group_ids(frame)
    # a and b share L1; d shares P1 with a; c (L2), e (nothing) and f (L4) stand alone
    assert groups.tolist() == ["P1", "P1", "L2", "P1", "e", "L4"]
    assert splits.merged_groups(frame) == 1  # the old rule made b (L1) a group of its own, apart from a (P1)


def test_mixed_ids_put_no_lesion_and_no_patient_on_two_sides():
    frame = mixed_ids()
    groups = splits.group_ids(frame)
    split = splits.assign(frame["label"], groups, 0.15, 0.15, seed=42)
    assert (sides(frame, split, "lesion_id") == 1).all()
    assert (sides(frame, split, "patient_id") == 1).all()
    assert (split.groupby(groups).nunique() == 1).all()
    # the old rule (patient_id, else lesion_id) would have cut lesions in two; the components do not
    old = frame["patient_id"].fillna(frame["lesion_id"]).fillna(frame["isic_id"])
    old_split = splits.assign(frame["label"], old, 0.15, 0.15, seed=42)
    assert (sides(frame, old_split, "lesion_id") > 1).sum() > 20
    assert splits.merged_groups(frame) > 0


def test_the_grouped_split_keeps_class_ratios_and_fractions():
    frame = mixed_ids(600, seed=3)
    split = splits.assign(frame["label"], splits.group_ids(frame), 0.15, 0.15, seed=7)
    shares = split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.70, abs=0.03)
    assert shares["val"] == pytest.approx(0.15, abs=0.03) and shares["test"] == pytest.approx(0.15, abs=0.03)
    overall = frame["label"].mean()
    for side in splits.SPLITS:
        assert frame.loc[split == side, "label"].mean() == pytest.approx(overall, abs=0.03), side


def test_the_split_is_deterministic_and_seeded():
    frame = mixed_ids()
    groups = splits.group_ids(frame)
    a = splits.assign(frame["label"], groups, 0.15, 0.15, seed=1)
    assert a.equals(splits.assign(frame["label"], groups, 0.15, 0.15, seed=1))
    assert not a.equals(splits.assign(frame["label"], groups, 0.15, 0.15, seed=2))


def test_rare_classes_still_reach_val_and_test_when_they_can():
    strata = pd.Series([0] * 200 + [1] * 10)
    groups = pd.Series([f"g{i}" for i in range(210)])
    split = splits.assign(strata, groups, 0.15, 0.15, seed=0)
    assert set(split[strata == 1]) == {"train", "val", "test"}


def test_grouping_and_splitting_100k_rows_is_cheap():
    rng = np.random.default_rng(0)
    n = 100_000
    lesion = rng.integers(0, 40_000, n)
    frame = pd.DataFrame({
        "isic_id": [f"ISIC_{i:07d}" for i in range(n)],
        "lesion_id": [f"IL_{x:07d}" for x in lesion],
        "patient_id": np.where(rng.random(n) < 0.5, [f"IP_{x // 3:07d}" for x in lesion], None),
    })
    strata = pd.Series(rng.integers(0, 8, n))
    started = time.process_time()
    split = splits.assign(strata, splits.group_ids(frame), 0.15, 0.15, seed=0)
    assert time.process_time() - started < 15  # ~1 s here; StratifiedGroupKFold took 45 s
    assert (sides(frame, split, "lesion_id") == 1).all()


def test_the_metadata_stage_uses_the_components_and_reports_merges(make_raw):
    frame = mixed_ids(60)
    rows = [{"isic_id": r.isic_id, "lesion_id": r.lesion_id or "", "patient_id": r.patient_id or "",
             "sex": "female", "diagnosis_1": "Malignant" if r.label else "Benign"} for r in frame.itertuples()]
    table, summary = metadata.build(make_raw(rows), base_params())
    assert summary["groups_merged"] > 0 and summary["groups"] == table["group"].nunique()
    for column in ("lesion_id", "patient_id"):
        assert (table.dropna(subset=[column]).groupby(column)["split"].nunique() == 1).all()


def test_val_and_test_hold_multi_image_groups_like_train():
    """Group sizes spread over the splits as in the whole table: a test set of single-image lesions only
    (what dealing the largest groups first gave on HAM10000) would not be a sample of the population."""
    rng = np.random.default_rng(3)
    sizes = rng.choice([1, 2, 3, 4], size=3000, p=[0.55, 0.28, 0.15, 0.02])
    groups = pd.Series(np.repeat([f"L{i}" for i in range(len(sizes))], sizes))
    labels = pd.Series(np.repeat(rng.random(len(sizes)) < 0.2, sizes).astype(int))
    split = splits.assign(labels, groups, 0.15, 0.15, seed=42)
    per_group = pd.DataFrame({"group": groups, "split": split}).groupby("group")["split"].agg(["first", "size"])
    mean_size = per_group.groupby("first")["size"].mean()
    assert (mean_size - mean_size["train"]).abs().max() < 0.15, mean_size
