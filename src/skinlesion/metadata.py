"""The metadata stage: raw metadata.csv -> typed, labelled, split and imputed Parquet table.

Every row that leaves is counted with its reason; imputation means are fitted on train only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels, raw_layout, splits
from .errors import PipelineError
from .io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

NUMERIC = ("age_approx", "clin_size_long_diam_mm")
TEXT = (
    "patient_id", "lesion_id", "sex", "anatom_site_1", "diagnosis_1", "diagnosis_2", "diagnosis_3",
    "attribution", "copyright_license", "image_type",
)
# The site, whichever field a record carries it in: the archive's hierarchical anatom_site_1 (its finer
# anatom_site_2.._5 stay as they are), else its older anatom_site_general (many records carry both, older ones
# only that), else the retired challenge spelling anatom_site_general_challenge of local copies. The older
# values map onto anatom_site_1's top level; 'palms/soles' (which limb?) and 'oral/genital' (oral is not
# anogenital) stay missing. The same table as sources/local/vocabulary.SITE_GENERAL (a test keeps them equal).
SITE_FIELDS = ("anatom_site_general", "anatom_site_general_challenge")
SITE_FROM_GENERAL = {
    "head/neck": "Head and neck",
    "torso": "Trunk", "anterior torso": "Trunk", "posterior torso": "Trunk", "lateral torso": "Trunk",
    "upper extremity": "Upper extremity",
    "lower extremity": "Lower extremity",
}


def site(frame: pd.DataFrame) -> pd.Series:
    """anatom_site_1 where a record has it, else the older general site mapped onto it."""
    out = (frame["anatom_site_1"] if "anatom_site_1" in frame else pd.Series(pd.NA, index=frame.index))
    out = out.astype("string").str.strip().replace("", pd.NA)
    for column in SITE_FIELDS:
        if column in frame:
            general = frame[column].astype("string").str.strip().str.lower().map(SITE_FROM_GENERAL)
            out = out.fillna(general.astype("string"))
    return out


def typed(raw: pd.DataFrame) -> pd.DataFrame:
    """Archive strings -> typed columns; absent optional columns appear as all-missing."""
    frame = raw.copy()
    frame["anatom_site_1"] = site(frame)
    for column in NUMERIC:
        values = frame[column] if column in frame else pd.Series(np.nan, index=frame.index)
        frame[column] = pd.to_numeric(values, errors="coerce").astype("float64")
    for column in TEXT:
        values = frame[column] if column in frame else pd.Series(pd.NA, index=frame.index)
        frame[column] = values.astype("string").str.strip().replace("", pd.NA)
    frame["sex"] = frame["sex"].str.lower().where(frame["sex"].str.lower().isin(["male", "female"]))
    return frame


def build(raw_dir: str | os.PathLike, params: dict) -> tuple[pd.DataFrame, dict]:
    cfg = params.get("metadata", {})
    raw = raw_layout.read_metadata(raw_dir)
    images = raw_layout.image_files(raw_dir)
    frame = typed(raw)
    dropped: dict[str, int] = {}

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal frame
        count = int(mask.sum())
        if count:
            dropped[reason] = dropped.get(reason, 0) + count
            log.info("metadata: dropped %d row(s): %s", count, reason)
        frame = frame.loc[~mask]

    drop(frame["isic_id"].map(raw_layout.id_problem).notna(), "missing or bad isic_id")
    conflicts = conflicting_ids(frame)
    drop(frame["isic_id"].isin(conflicts), "duplicate isic_id with conflicting labels")
    drop(frame["isic_id"].duplicated(keep="first"), "duplicate isic_id")
    drop(~frame["isic_id"].isin(images), "no image file in raw/images")
    frame["image"] = frame["isic_id"].map(lambda i: images[i].name)

    frame["label"] = labels.binary_label(frame["diagnosis_1"], cfg.get("indeterminate", "exclude"))
    drop(frame["diagnosis_1"].eq("Indeterminate").fillna(False) & frame["label"].isna(),
         "diagnosis_1 Indeterminate (metadata.indeterminate: exclude)")
    drop(frame["label"].isna(), "diagnosis_1 missing or unknown")
    if cfg.get("drop_missing_sex", True):
        drop(frame["sex"].isna(), "sex missing (metadata.drop_missing_sex)")
    if frame.empty:
        raise PipelineError(f"no usable rows left in {raw_dir}/metadata.csv; dropped: {dropped}")

    frame["label_name"] = frame["label"].map(dict(enumerate(labels.BINARY_CLASSES))).astype("string")
    frame["label_multiclass"] = labels.multiclass_label(frame["diagnosis_1"], frame["diagnosis_3"])
    frame["multiclass_name"] = frame["label_multiclass"].map(dict(enumerate(labels.CLASSES))).astype("string")
    outside = int(frame["label_multiclass"].isna().sum())

    frame = frame.sort_values("isic_id").reset_index(drop=True)
    frame["group"] = splits.group_ids(frame)
    strata = frame["label_multiclass"].astype("float").fillna(-1).astype(int) * 2 + frame["label"].astype(int)
    split_cfg = params["split"]
    frame["split"] = splits.assign(strata, frame["group"], split_cfg["val"], split_cfg["test"], params["seed"])

    means = impute(frame, cfg.get("impute_mean", list(NUMERIC)))
    summary = {
        "rows_in": int(len(raw)),
        "rows_out": int(len(frame)),
        "dropped": dropped,
        "outside_five_classes": outside,
        "imputation_means_train": means,
        "counts": counts(frame),
        "groups": int(frame["group"].nunique()),
        "groups_merged": splits.merged_groups(frame),
        "conflicts": conflicts[:100],
        "source": data_source(raw_dir),
    }
    return frame, summary


def data_source(raw_dir: str | os.PathLike) -> dict:
    """Which source wrote the raw folder (its source.json): recorded so that the model bundle can say what a
    model was trained on, while no stage after fetch reads the params' data section."""
    path = Path(raw_dir) / "source.json"
    try:
        info = read_json(path)
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        return {"source": "unknown", "note": f"{path} missing or unreadable"}
    return {"source": str(info.get("source", "unknown"))[:64], "images": info.get("images")}


LABEL_FIELDS = ("diagnosis_1", "diagnosis_2", "diagnosis_3")


def conflicting_ids(frame: pd.DataFrame) -> list[str]:
    """isic_ids that appear more than once with different labels (diagnosis_1..3): which row is right
    cannot be told, so none is kept."""
    repeated = frame[frame["isic_id"].duplicated(keep=False)]
    if repeated.empty:
        return []
    labels_ = repeated[list(LABEL_FIELDS)].astype("string").fillna("")
    distinct = labels_.groupby(repeated["isic_id"]).nunique().max(axis=1)
    ids = sorted(distinct.index[distinct > 1].astype(str))
    if ids:
        log.warning("metadata: %d isic_id(s) appear with conflicting labels, all their rows dropped (e.g. %s)",
                    len(ids), ", ".join(ids[:5]))
    return ids


def impute(frame: pd.DataFrame, columns: list[str]) -> dict:
    """Add <col>_missing indicators, then fill with the train mean (0 where train has no value)."""
    means = {}
    train = frame["split"] == "train"
    for column in NUMERIC:
        frame[f"{column}_missing"] = frame[column].isna()
    for column in columns:
        mean = frame.loc[train, column].mean()
        means[column] = None if np.isnan(mean) else round(float(mean), 6)
        frame[column] = frame[column].fillna(0.0 if np.isnan(mean) else mean)
    return means


def counts(frame: pd.DataFrame) -> dict:
    """Images per split and class, binary and five-class, for logs and the report."""
    out = {}
    for name, column in (("binary", "label_name"), ("multiclass", "multiclass_name")):
        table = frame.groupby(["split", column], observed=True).size()
        out[name] = {s: {str(k): int(v) for k, v in table[s].items()} for s in table.index.levels[0]}
    return out


def run(raw_dir: str | os.PathLike, out: str | os.PathLike, params: dict) -> dict:
    frame, summary = build(raw_dir, params)
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    write_json(Path(out).with_name(Path(out).stem + "_summary.json"), summary)
    log.info("metadata: %d of %d rows kept, %d groups (%d merged through shared patient/lesion ids); per split: %s",
             summary["rows_out"], summary["rows_in"], summary["groups"], summary["groups_merged"],
             summary["counts"]["binary"])
    return summary


def load_summary(path: str | os.PathLike, needed_for: str) -> dict:
    """The metadata stage's summary (<table>_summary.json): its train means and data source, read by the
    stages that must fill or record them exactly as this stage did."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: the metadata stage writes it (skinlesion metadata); {needed_for}.")
    summary = read_json(path)
    if "imputation_means_train" not in summary:
        raise PipelineError(f"{path} has no imputation_means_train; rerun skinlesion metadata.")
    return summary


def load(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: the metadata stage writes it (skinlesion metadata).")
    return pd.read_parquet(path)
