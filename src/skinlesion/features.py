"""Metadata features for the metadata models and the dual-input model: one fixed column layout.

The layout depends only on the feature names, never on the data, so train, test and new images
always produce the same columns in the same order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KNOWN = ("age_approx", "sex", "clin_size_long_diam_mm", "anatom_site_1")  # what matrix() can build (schema enum)
SITES = ["Head and neck", "Trunk", "Upper extremity", "Lower extremity", "Anogenital region"]


def column_names(features: list[str]) -> list[str]:
    names = []
    for feature in features:
        if feature == "sex":
            names.append("sex_male")
        elif feature == "anatom_site_1":
            names += [f"site={s}" for s in SITES] + ["site_missing"]
        else:
            names += [feature, f"{feature}_missing"]
    return names


def matrix(table: pd.DataFrame, features: list[str]) -> np.ndarray:
    """float32 (n, len(column_names(features))) from the metadata table (imputed values + indicators).
    The features a variant uses (and their default) come from skinlesion.variant."""
    columns = []
    for feature in features:
        if feature == "sex":
            columns.append(table["sex"].map({"male": 1.0, "female": 0.0}).astype("float").fillna(0.5))
        elif feature == "anatom_site_1":
            site = table["anatom_site_1"].astype("string")
            columns += [(site == s).fillna(False).astype(float) for s in SITES]
            columns.append(site.isna().astype(float))
        else:
            if feature not in table:
                raise KeyError(f"metadata feature '{feature}' is not a column of the metadata table")
            columns.append(pd.to_numeric(table[feature], errors="coerce").astype(float).fillna(0.0))
            missing = table.get(f"{feature}_missing", pd.Series(False, index=table.index))
            columns.append(missing.astype(float))
    return np.column_stack([np.asarray(c, dtype=np.float32) for c in columns]).astype(np.float32)
