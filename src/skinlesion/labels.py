"""Labels from the archive's diagnosis fields: binary (benign / malignant) and the study's five classes.

The single place where diagnosis strings become labels. Sources normalise older vocabularies
(HAM10000 dx codes, ISIC 2020 benign_malignant / diagnosis) into diagnosis_1..3 first; see
docs/labels.md for the whole mapping.
"""

from __future__ import annotations

import pandas as pd

BINARY_CLASSES = ["benign", "malignant"]
CLASSES = [
    "benign",
    "basal_cell_carcinoma",
    "melanoma",
    "melanoma_metastasis",
    "squamous_cell_carcinoma",
]

# diagnosis_3 (exact, case matters) -> multiclass label, for diagnosis_1 == Malignant.
MALIGNANT_DIAGNOSIS_3 = {
    "Basal cell carcinoma": "basal_cell_carcinoma",
    "Melanoma Invasive": "melanoma",
    "Melanoma in situ": "melanoma",
    "Melanoma, NOS": "melanoma",
    "Melanoma metastasis": "melanoma_metastasis",
    "Squamous cell carcinoma in situ": "squamous_cell_carcinoma",
    "Squamous cell carcinoma, Invasive": "squamous_cell_carcinoma",
    "Squamous cell carcinoma, NOS": "squamous_cell_carcinoma",
}


INDETERMINATE = ("exclude", "benign", "malignant")  # metadata.indeterminate (the schema's enum)


def binary_label(diagnosis_1: pd.Series, indeterminate: str = "exclude") -> pd.Series:
    """1 malignant, 0 benign, <NA> excluded (Indeterminate unless mapped, missing, unknown)."""
    if indeterminate not in INDETERMINATE:
        raise ValueError(f"indeterminate must be one of {INDETERMINATE}, not {indeterminate!r}")
    mapping = {"Benign": 0, "Malignant": 1}
    if indeterminate != "exclude":
        mapping["Indeterminate"] = int(indeterminate == "malignant")
    return diagnosis_1.map(mapping).astype("Int8")


def multiclass_label(diagnosis_1: pd.Series, diagnosis_3: pd.Series) -> pd.Series:
    """Index into CLASSES, or <NA> for anything outside the five classes (e.g. Keratoacanthoma)."""
    # fillna(False): a missing diagnosis_1 compares as <NA>, which must not count as a match
    malignant = (diagnosis_1 == "Malignant").fillna(False).astype(bool)
    benign = (diagnosis_1 == "Benign").fillna(False).astype(bool)
    names = diagnosis_3.map(MALIGNANT_DIAGNOSIS_3).where(malignant)
    names = names.mask(benign, "benign")
    return names.map({c: i for i, c in enumerate(CLASSES)}).astype("Int8")
