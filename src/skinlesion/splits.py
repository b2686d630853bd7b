"""Train/val/test split stratified by label and grouped by patient (lesion where there is no patient)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

SPLITS = ("train", "val", "test")


def group_ids(frame: pd.DataFrame) -> pd.Series:
    """patient_id, else lesion_id, else the image itself: the unit no split may cut through."""
    group = pd.Series(frame["isic_id"].astype(str), index=frame.index)
    for column in ("lesion_id", "patient_id"):  # later columns win
        if column in frame:
            values = frame[column]
            group = values.where(values.notna() & (values.astype(str) != ""), group).astype(str)
    return group


def _one_fold(strata: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of one fold holding about `fraction` of the rows, whole groups only."""
    n_splits = max(2, int(round(1.0 / fraction)))
    n_groups = len(np.unique(groups))
    n_splits = min(n_splits, n_groups)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes with fewer groups than folds are expected (a few metastases, say):
        # they land in fewer folds, which is the best any grouped split can do.
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(np.zeros(len(strata)), strata, groups))
    mask = np.zeros(len(strata), dtype=bool)
    mask[held] = True
    return mask


def assign(strata: pd.Series, groups: pd.Series, val: float, test: float, seed: int) -> pd.Series:
    """Split labels ('train'/'val'/'test') for each row; strata are the labels to balance."""
    strata_arr = strata.to_numpy()
    groups_arr = groups.to_numpy()
    split = np.full(len(strata_arr), "train", dtype=object)
    is_test = _one_fold(strata_arr, groups_arr, test, seed)
    split[is_test] = "test"
    rest = np.flatnonzero(~is_test)
    # val as a share of what is left after test, so the overall fraction comes out as asked
    is_val = _one_fold(strata_arr[rest], groups_arr[rest], val / (1.0 - test), seed + 1)
    split[rest[is_val]] = "val"
    return pd.Series(split, index=strata.index, name="split")
