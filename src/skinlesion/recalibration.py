"""Local recalibration: a clinic refits a bundle's operating point on a few labelled images of its own.

A threshold chosen on the internal validation split rarely keeps its sensitivity on another clinic's
cameras and patients (evaluation.json's threshold_transfer block shows how far it moves). Given a labelled
local set, this refits what the bundle's decision holds, and nothing else (the model is copied unchanged):

  * the temperature, when the decision uses temperature calibration (maximum likelihood on the local set);
  * the threshold: the highest one whose sensitivity on the (calibrated) local scores reaches the target
    (metrics.choose_threshold's "sensitivity" rule, the one evaluate uses).

How far to trust it, reported beside it:
  * bootstrap: the refit repeated on B stratified resamples (malignant and benign drawn separately, by
    patient / lesion group as evaluate's bootstrap does): the threshold's median and 95% percentile
    interval, and the in-sample sensitivity and specificity at the fitted threshold with intervals;
  * k-fold cross-validation inside the local set (stratified, grouped): the same refit on k-1 folds,
    applied to the held-out fold; pooled out-of-fold sensitivity and specificity with Wilson intervals.
    In-sample numbers are optimistic by construction (the threshold was chosen to reach the target on
    those very cases); the out-of-fold ones are what to report. The bundle's original (transferred)
    decision is scored on the same cases for comparison.

The local set is read by the external stage's own code (skinlesion.external.prepare: the local source's
readers and layouts, the metadata stage's labelling, the images stage's decoder at the bundle's input size,
missing values filled with the bundle's train means), so it is scored exactly as an external test set is.
The new bundle is written through Bundle.complete (atomic) with a `recalibration` provenance block.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__, metrics
from .bundle import MANIFEST, Bundle
from .calibration import Calibrator
from .errors import PipelineError
from .io import check_replaceable, write_json

log = logging.getLogger(__name__)
NAME = "local"  # the prepared set's folder name inside the temporary folder
CI_Z = 1.959964  # two-sided 95%
# Cleaning of the local set: Indeterminate cases have no binary label; a case without sex is kept (the
# study's drop_missing_sex would discard a clinic's whole set when its CSV has no sex column, and every
# model scores a missing sex as unknown, 0.5).
CLEANING = {"indeterminate": "exclude", "drop_missing_sex": False}
METADATA_ONLY_SIZE = 32  # images of a metadata-only bundle are only checked to decode, at a small size


@dataclass
class LocalSet:
    """The labelled local cases as the bundle scores them: labels, raw (uncalibrated) P(malignant), groups."""

    name: str
    layout: str
    y: np.ndarray
    raw: np.ndarray
    groups: np.ndarray  # integer group codes (patient / lesion; each image its own without ids)
    sha256: str
    rows_in: int
    dropped: dict
    unreadable: int
    overlap: dict = field(default_factory=dict)  # checked against the bundle's seen.json; what --exclude-overlap left out

    @property
    def n(self) -> int:
        return len(self.y)


# ----------------------------------------------------------------------------------------------
# Reading and scoring the local set


def content_sha256(folder: Path, extra: Path | None = None) -> str:
    """sha256 over every regular, non-hidden file under `folder` (relative path and bytes, sorted by path),
    then `extra` (a --metadata CSV kept elsewhere): the same files give the same hash on any machine."""
    digest = hashlib.sha256()
    files = sorted((p for p in folder.rglob("*") if p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
                   key=lambda p: p.relative_to(folder).as_posix())
    named = [(p.relative_to(folder).as_posix(), p) for p in files]
    if extra is not None:
        named.append((f"--metadata:{extra.name}", extra))
    for name, path in named:
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _stage(folder: Path, metadata: Path, tmp: Path) -> Path:
    """An isic-cli folder made of `metadata` (copied) and the set's images: --metadata given apart.

    Each regular file is hard-linked (copied across file systems), each link copied as the link it is, so
    the local source judges the set's own entries (it reads no link; a linked images/ would be refused)."""
    stage = tmp / "stage"
    (stage / "images").mkdir(parents=True)
    shutil.copyfile(metadata, stage / "metadata.csv")
    images = folder / "images"
    if images.is_symlink():
        raise PipelineError(f"{images} is a symbolic link: the labelled set is read, not followed; put the "
                            "images folder itself there in place of the link.")
    with os.scandir(images if images.is_dir() else folder) as entries:
        for entry in entries:
            dest = stage / "images" / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), dest)
            elif entry.is_file(follow_symlinks=False):
                try:
                    os.link(entry.path, dest)
                except OSError:
                    shutil.copyfile(entry.path, dest)
    return stage


def _check_labelled(root: Path, layout: str, shown: Path) -> str:
    """The layout, once the local source's reader found cases with images and labels; a clear error else."""
    from .sources import local

    if layout == "auto":
        try:
            layout = local.detect(root)
        except PipelineError:  # no metadata CSV of any layout: images alone carry no labels
            raise PipelineError(f"{shown} has no labels: no metadata CSV found (isic-cli metadata.csv with isic_id, "
                                "HAM10000_metadata.csv or an ISIC 2020 CSV). Give the labels with --metadata CSV "
                                "(isic_id, diagnosis_1 Benign / Malignant) or put metadata.csv beside the images.") from None
    records, counts = local.match(local.READERS[layout](root))
    if not records:
        raise PipelineError(f"{shown}: no metadata row has an image ({counts['rows']} rows, {counts['images_found']} "
                            "images); put the images beside metadata.csv (isic-cli's flat layout) or in images/ beside it, "
                            "named <isic_id>.jpg.")
    malignant = sum(r.get("diagnosis_1") == "Malignant" for r in records)
    benign = sum(r.get("diagnosis_1") == "Benign" for r in records)
    if not malignant + benign:
        raise PipelineError(f"{shown} has no labels: none of its {len(records)} cases has a benign or malignant "
                            "diagnosis. Add a diagnosis_1 column (Benign / Malignant), or benign_malignant, to its "
                            "metadata CSV (docs/labels.md); recalibration needs labelled cases.")
    one_class(shown, malignant + benign, malignant)  # before any image is decoded
    return layout


def one_class(shown, n: int, n_malignant: int) -> None:
    if n_malignant == 0 or n_malignant == n:
        which = "malignant" if n_malignant == 0 else "benign"
        raise PipelineError(f"{shown}: the labelled set has no {which} case ({n} cases, {n_malignant} malignant); a "
                            "sensitivity and a specificity need both: add labelled cases of both classes.")


def read_local(trained: Bundle, folder: str | os.PathLike, metadata: str | os.PathLike | None = None,
               layout: str = "auto", exclude_overlap: bool = False) -> LocalSet:
    """The labelled folder read, labelled and scored exactly as the external stage and evaluate do, after the
    overlap check against what the bundle's model saw (guard_overlap)."""
    from . import external
    from .evaluation import external_split

    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"labelled set {folder} is not a folder: give the folder holding the local images and "
                            "their metadata CSV (isic-cli layout: metadata.csv with diagnosis_1 and the <isic_id>.jpg "
                            "images beside it, or in images/).")
    meta = Path(metadata) if metadata else None
    if meta is not None and not meta.is_file():
        raise PipelineError(f"--metadata {meta} not found: give the labelled set's metadata CSV.")
    seen = trained.seen()  # a damaged seen.json is the bundle's fault: said before the set is read
    with tempfile.TemporaryDirectory(prefix="skinlesion-recalibrate-") as tmp_name:
        tmp = Path(tmp_name)
        root = _stage(folder, meta, tmp) if meta is not None else folder
        shown = meta if meta is not None else folder

        def unstaged(exc: Exception) -> PipelineError:
            """The user's names in a message from the external stage's code, not the staging folder's."""
            text = str(exc).replace(f"external set {NAME} ({folder}): ", "")
            text = text.replace(str(tmp / "prepared" / NAME / ".raw"), str(folder))  # the local copy (links)
            text = text.replace(str(root), str(folder)).replace(str(tmp), "(temporary folder)")
            text = text.replace("data.local.layout", "--layout").replace("data.local.path", "LABELLED_FOLDER")
            text = "; ".join(line.strip() for line in text.splitlines() if line.strip())  # one line
            return PipelineError(text if text.startswith(str(shown)) else f"labelled set {shown}: {text}")

        try:
            layout = _check_labelled(root, "isic-cli" if meta is not None else layout, shown)
            size = int(trained.input_size or METADATA_ONLY_SIZE)
            # decoded as the model's training images were (aspect, colour constancy: the bundle's input block)
            params = {"metadata": dict(CLEANING), "images": {**trained.decoding.changed(), "size": size, "workers": 1}}
            prepared = external.prepare({"name": NAME, "path": str(folder), "layout": layout}, root,
                                        tmp / "prepared" / NAME, params, trained.imputation_means)
            split = external_split(tmp / "prepared", NAME, trained.task)
            split, checked = guard_overlap(trained, seen, split, shown, exclude_overlap)
            y = split.labels(trained.task)
            raw = trained.predict(split.table, split.images() if trained.uses_images else None, tta=trained.tta)
        except PipelineError as exc:
            raise unstaged(exc) from None
        groups = metrics.group_codes(split.table["group"].to_numpy(), len(y))
    return LocalSet(name=folder.resolve().name, layout=layout, y=np.asarray(y, dtype=np.int64),
                    raw=np.asarray(raw, dtype=np.float64), groups=groups,
                    sha256=content_sha256(folder, meta), rows_in=int(prepared["rows_in"]),
                    dropped=dict(prepared["dropped"]), unreadable=int(prepared["unreadable"]), overlap=checked)


def guard_overlap(trained: Bundle, seen: dict | None, split, shown, exclude: bool):
    """The labelled split, checked against the bundle's seen.json (isic_id, lesion_id, patient_id, pixels): an
    overlap is an error with counts and examples, or, with `exclude` (--exclude-overlap), its images are left
    out and counted. Returns (the split to use, what the report records)."""
    from . import dataset, overlap

    if seen is None:
        log.warning("recalibrate: %s records no seen.json (written before skinlesion recorded what a model saw): "
                    "the local set cannot be checked for images the model was trained on", trained.dir)
        return split, {"checked": False}
    found = overlap.find_seen(seen, split, with_pixels=trained.uses_images)
    ways = sorted(found) if found else []
    checked = {"checked": True, "ways": ["isic_id", "lesion_id", "patient_id"] + (
        ["pixels"] if trained.uses_images and overlap.pixels_comparable(seen, split) else [])}
    if not found:
        return split, {**checked, "excluded": 0}
    text = overlap.describe(found, len(split), str(shown),
                            f"what {trained.name} was trained or tuned on (its bundle's {overlap.SEEN})")
    if not exclude:
        raise PipelineError(f"{text}. Refitted on them, the threshold would be tuned on images the model already "
                            "knows; take them out of the set, or pass --exclude-overlap to leave them out (counted "
                            "in the report).")
    rows = set().union(*map(set, found.values()))
    keep = ~split.table["isic_id"].astype(str).isin(rows)
    log.warning("recalibrate: %s; --exclude-overlap: those %d left out, %d kept", text, len(rows), int(keep.sum()))
    kept = dataset.Split(split.table[keep].reset_index(drop=True), split.shards_dir)
    return kept, {**checked, "excluded": len(rows), "excluded_by": {way: len(found[way]) for way in ways}}


# ----------------------------------------------------------------------------------------------
# Fitting and its uncertainty


@dataclass(frozen=True)
class Fit:
    calibrator: Calibrator
    threshold: float

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return (self.calibrator(raw) >= self.threshold).astype(int)


def fit(y: np.ndarray, raw: np.ndarray, method: str, target: float) -> Fit:
    """Temperature (when `method` is temperature), then the highest threshold reaching `target` sensitivity
    on the calibrated scores (evaluate's own rule)."""
    calibrator = Calibrator.fit(method, y, raw)
    return Fit(calibrator, metrics.choose_threshold(y, calibrator(raw), "sensitivity", target))


def wilson(k: int, n: int) -> dict | None:
    """Wilson score 95% interval of a proportion k/n (sound at 0 and n, unlike the normal approximation)."""
    if n == 0:
        return None
    p, z2 = k / n, CI_Z ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = CI_Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"low": metrics._r(max(0.0, centre - half)), "high": metrics._r(min(1.0, centre + half))}


def rates(y: np.ndarray, pred: np.ndarray) -> dict:
    """Sensitivity and specificity with Wilson intervals, and the counts they come from."""
    tp, fn = int(((pred == 1) & (y == 1)).sum()), int(((pred == 0) & (y == 1)).sum())
    tn, fp = int(((pred == 0) & (y == 0)).sum()), int(((pred == 1) & (y == 0)).sum())
    return {"sensitivity": metrics._r(tp / (tp + fn)) if tp + fn else None, "sensitivity_ci95": wilson(tp, tp + fn),
            "specificity": metrics._r(tn / (tn + fp)) if tn + fp else None, "specificity_ci95": wilson(tn, tn + fp),
            "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def _interval(values: list[float]) -> dict | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 10:  # as metrics.bootstrap: too few usable replicates for a percentile interval
        return None
    return {"low": metrics._r(np.quantile(v, 0.025)), "high": metrics._r(np.quantile(v, 0.975))}


def bootstrap(data: LocalSet, method: str, target: float, fitted: Fit, n_boot: int, seed: int) -> dict:
    """The refit on `n_boot` stratified resamples of whole groups: groups holding a malignant case and the
    others are drawn separately, each as many times as there are of them, so every replicate keeps the
    set's mix. Gives the threshold's spread and the fitted threshold's sensitivity / specificity spread."""
    rng = np.random.default_rng(seed)
    n_groups = int(data.groups.max()) + 1
    malignant_group = np.bincount(data.groups, weights=data.y, minlength=n_groups) > 0
    strata = [np.flatnonzero(malignant_group), np.flatnonzero(~malignant_group)]
    pred = fitted.predict(data.raw)
    thresholds, temperatures, sens, spec = [], [], [], []
    for _ in range(n_boot):
        counts = np.zeros(n_groups, dtype=np.int64)
        for members in strata:
            if len(members):
                counts[members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)))
        rows = np.repeat(np.arange(data.n), counts[data.groups])
        y = data.y[rows]
        if y.min() == y.max():  # possible only when every benign case shares a group with a malignant one
            continue
        refit = fit(y, data.raw[rows], method, target)
        thresholds.append(refit.threshold)
        temperatures.append(refit.calibrator.temperature)
        sens.append(float((pred[rows][y == 1]).mean()))
        spec.append(float((1 - pred[rows][y == 0]).mean()))
    in_sample = rates(data.y, pred)
    return {
        "replicates": n_boot, "usable_replicates": len(thresholds), "seed": seed,
        "unit": "group (patient or lesion; an image without ids is its own), stratified: groups with and without a "
                "malignant case",
        "threshold_median": metrics._r(np.median(thresholds)) if thresholds else None,
        "threshold_ci95": _interval(thresholds),
        "temperature_ci95": _interval(temperatures) if method == "temperature" else None,
        "in_sample": {"sensitivity": in_sample["sensitivity"], "sensitivity_ci95": _interval(sens),
                      "specificity": in_sample["specificity"], "specificity_ci95": _interval(spec),
                      "note": "on the very cases the threshold was fitted to: optimistic; report the "
                              "cross-validated numbers"},
    }


def check_folds(data: LocalSet, k: int, shown: str) -> None:
    """Stratified grouped k-fold needs k groups of each class: say how many there are and what to do."""
    n_groups = int(data.groups.max()) + 1
    pos = int((np.bincount(data.groups, weights=data.y, minlength=n_groups) > 0).sum())
    neg = int((np.bincount(data.groups, weights=1 - data.y, minlength=n_groups) > 0).sum())
    if pos < k or neg < k:
        raise PipelineError(f"{shown}: --cv {k} needs at least {k} malignant and {k} benign cases (counted by patient / "
                            f"lesion, which stay in one fold), the set has {pos} malignant and {neg} benign: add "
                            f"labelled cases or lower --cv (at least 2).")


def cross_validate(data: LocalSet, method: str, target: float, original: Fit, k: int, seed: int) -> dict:
    """Stratified, grouped k-fold inside the local set: fit on k-1 folds, predict the held-out one. Every case
    is predicted once, by a fit that never saw it (or its patient / lesion)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    oof = np.full(data.n, -1)
    per_fold = []
    for i, (train, held) in enumerate(folds.split(np.zeros(data.n), data.y, data.groups)):
        if data.y[train].min() == data.y[train].max():
            raise PipelineError(f"cross-validation fold {i + 1} of {k} left no case of one class to fit on; "
                                "add labelled cases or lower --cv.")
        fold_fit = fit(data.y[train], data.raw[train], method, target)
        oof[held] = fold_fit.predict(data.raw[held])
        here, before = rates(data.y[held], oof[held]), rates(data.y[held], original.predict(data.raw[held]))
        per_fold.append({"fold": i + 1, "n": int(len(held)), "n_malignant": int(data.y[held].sum()),
                         "n_fitted_on": int(len(train)), "threshold": metrics._r(fold_fit.threshold),
                         "temperature": fold_fit.calibrator.temperature,
                         "sensitivity": here["sensitivity"], "specificity": here["specificity"],
                         "original_sensitivity": before["sensitivity"], "original_specificity": before["specificity"]})
    assert (oof >= 0).all(), "a case was never held out"  # StratifiedGroupKFold partitions the cases
    return {"k": k, "seed": seed, "unit": "group (patient or lesion), stratified by class",
            "folds": per_fold,
            "pooled_out_of_fold": rates(data.y, oof),
            "original_decision": rates(data.y, original.predict(data.raw)),
            "note": "pooled: every case predicted by the threshold (and temperature) fitted on the other folds; "
                    "intervals: Wilson 95% over cases. original_decision: the bundle's transferred threshold on "
                    "the same cases"}


# ----------------------------------------------------------------------------------------------
# The command


def check_arguments(target: float, n_boot: int, k: int) -> None:
    if not 0 < target <= 1:
        raise PipelineError(f"--target-sensitivity {target} is outside (0, 1]: give the sensitivity to reach, "
                            "e.g. 0.9.")
    if n_boot < 0:
        raise PipelineError(f"--bootstrap {n_boot}: give a number of replicates, 0 (none) or more (1000 is usual).")
    if k < 2:
        raise PipelineError(f"--cv {k}: cross-validation needs at least 2 folds (5 is usual).")


def _bundle(path: str | os.PathLike) -> Bundle:
    if not Path(path).exists():
        raise PipelineError(f"bundle {path} does not exist: give bundles/<variant> (written by skinlesion evaluate) "
                            "or another recalibrated bundle.")
    trained = Bundle(path)
    if not trained.task.binary:
        raise PipelineError(f"{path} is a {trained.task.name} bundle: recalibration refits a binary threshold, and a "
                            f"{trained.task.name} bundle predicts its most probable class; use a binary variant.")
    return trained


def run(bundle_dir, folder, out, target: float, metadata=None, layout: str = "auto", n_boot: int = 1000,
        seed: int = 0, k: int = 5, report_path=None, exclude_overlap: bool = False) -> dict:
    from .prediction import Settings, decision_settings

    check_arguments(target, n_boot, k)
    trained = _bundle(bundle_dir)
    out = Path(out)
    if out.resolve() == trained.dir.resolve():
        raise PipelineError(f"-o {out} is the bundle being recalibrated; the original is never modified: "
                            "choose a new folder.")
    check_replaceable(out, MANIFEST)  # before any work: an existing folder must be an earlier bundle
    if report_path:
        check_replaceable(Path(report_path), None)  # a folder there: refused now, not after the bundle is written
    if trained.decision is None:  # train's models/<variant>: predict would use 0.5, uncalibrated
        log.warning("recalibrate: %s has no decision (a train output, not evaluated): it is compared as threshold "
                    "0.5 without calibration, as predict would use it, and no temperature is fitted", trained.dir)
        before = Settings()
    else:
        before = decision_settings(trained)
    original = Fit(before.calibration, float(before.threshold))
    method = before.calibration.method

    data = read_local(trained, folder, metadata, layout, exclude_overlap)
    n_pos = int(data.y.sum())
    shown = str(metadata or folder)
    one_class(shown, data.n, n_pos)  # again: cleaning or unreadable images may have removed a class
    check_folds(data, k, shown)
    fitted = fit(data.y, data.raw, method, target)
    result = {
        "local_set": {"folder": data.name, "folder_note": "the folder's name only, not its path",
                      "layout": data.layout, "metadata_csv": Path(metadata).name if metadata else None,
                      "cases": data.n, "malignant": n_pos, "benign": data.n - n_pos,
                      "groups": int(data.groups.max()) + 1, "rows_in": data.rows_in, "dropped": data.dropped,
                      "unreadable_images": data.unreadable, "cleaning": dict(CLEANING),
                      "overlap_with_training": data.overlap,
                      "content_sha256": data.sha256},
        "target_sensitivity": target, "calibration": method,
        "temperature": fitted.calibrator.temperature, "threshold": metrics._r(fitted.threshold),
        "bootstrap": bootstrap(data, method, target, fitted, n_boot, seed),
        "cross_validation": cross_validate(data, method, target, original, k, seed),
        "previous_decision": trained.decision, "previous_recalibration": trained.info.get("recalibration"),
        "from_bundle": {"variant": trained.name, "folder": trained.dir.resolve().name},
        "seed": seed, "skinlesion_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    decision = {"threshold": fitted.threshold, "malignancy_threshold": None, "rule": "sensitivity",
                "target_sensitivity": target, "calibration": method, "temperature": fitted.calibrator.temperature,
                "chosen_on": f"the local labelled set {data.name} ({data.n} cases) by skinlesion recalibrate",
                "evaluated_by": f"skinlesion {__version__}"}
    if trained.tta != "none":  # the scores it was refitted on were averaged over the flips: predict must too
        decision["tta"] = trained.tta
    trained.complete(out, decision, {"recalibration": result})
    if report_path:
        write_json(report_path, result)
    log.info("recalibrate: %s -> %s (threshold %.4f, was %s)", trained.dir, out, fitted.threshold, before.threshold)
    return result


def _ci(block: dict, key: str) -> str:
    value, ci = block.get(key), block.get(f"{key}_ci95")
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({ci['low']:.3f}-{ci['high']:.3f})" if ci else "")


def summary(result: dict) -> str:
    """The few lines a person reads: the three operating points side by side, the threshold's interval."""
    s, boot, cv = result["local_set"], result["bootstrap"], result["cross_validation"]
    prev = result["previous_decision"] or {}
    rows = [("original decision (transferred)", f"{prev.get('threshold', 0.5):.4f}", cv["original_decision"]),
            ("recalibrated, in-sample (optimistic)", f"{result['threshold']:.4f}", boot["in_sample"]),
            (f"recalibrated, {cv['k']}-fold CV (report this)", "per fold", cv["pooled_out_of_fold"])]
    lines = [f"local set {s['folder']}: {s['cases']} cases, {s['malignant']} malignant; target sensitivity "
             f"{result['target_sensitivity']}",
             f"{'':38} {'threshold':>9}  {'sensitivity (95% CI)':<22} {'specificity (95% CI)':<22}"]
    lines += [f"{name:38} {t:>9}  {_ci(block, 'sensitivity'):<22} {_ci(block, 'specificity'):<22}"
              for name, t, block in rows]
    ci = boot["threshold_ci95"]
    interval = f"{ci['low']:.4f}-{ci['high']:.4f}" if ci else "n/a (bootstrap off or too few replicates)"
    median = f"{boot['threshold_median']:.4f}" if boot["threshold_median"] is not None else "n/a"
    lines.append(f"threshold bootstrap: median {median}, 95% interval {interval} "
                 f"({boot['usable_replicates']} of {boot['replicates']} replicates)")
    if result["calibration"] == "temperature":
        lines.append(f"temperature: {result['temperature']} (was {prev.get('temperature')})")
    return "\n".join(lines)
