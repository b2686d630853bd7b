"""`skinlesion predict`: score new image files with a model bundle, exactly as evaluate scored the test set.

Per image: skinlesion.images.load_image at the bundle's input size and with its decoding options (aspect,
colour constancy: the same decode and resize the images stage applied), then Bundle.predict, the code path
evaluate uses, with the test-time augmentation evaluate chose (decision.tta). Everything else comes from the bundle
alone (skinlesion.bundle): the decision threshold and calibration evaluate chose on validation, and the
train means that metadata imputation used. A bundle from models/<variant> (train's, before evaluate) has
no decision: the threshold is then 0.5, with a warning naming bundles/<variant>.

An unreadable file, or one without a metadata row, gets its message in the `error` column and the
log; every other file is still scored.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .bundle import Bundle
from .calibration import Calibrator
from .errors import PipelineError
from .images import Decoding, load_image
from .io import atomic_path
from .metadata import NUMERIC, typed
from .raw_layout import IMAGE_SUFFIXES, read_csv
from .raw_packs import UNPACK_HINT, is_packed
from .sources.local.records import round_age

log = logging.getLogger(__name__)
BATCH = 256  # images decoded and scored at a time: bounded memory for any number of files


@dataclass
class Settings:
    """What evaluate chose on validation, as predict applies it."""

    threshold: float | None = 0.5
    calibration: Calibrator = field(default_factory=Calibrator)
    origin: str = "defaults"
    tta: str = "none"


def decision_settings(trained: Bundle) -> Settings:
    decision = trained.decision
    if decision is None:
        if trained.task.binary:
            log.warning("predict: %s has no decision (a train output, not evaluated): threshold 0.5, not one chosen "
                        "on validation; use bundles/%s, which evaluate writes", trained.dir, trained.name)
        return Settings()
    # chosen_on: the internal validation split (evaluate), or a local labelled set (recalibrate)
    out = Settings(threshold=decision.get("threshold"),
                   origin=f"{trained.dir} (chosen on {decision.get('chosen_on') or 'validation'})", tta=trained.tta)
    if decision.get("calibration", "none") != "none":
        out.calibration = Calibrator(decision["calibration"], float(decision.get("temperature", 1.0)))
    return out


def collect(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files (.jpg, .jpeg, .png) under each folder, sorted, recursively."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            out.append(p)  # a missing file is reported in its row, not here
    return out


def prepare_metadata(csv_path: str | os.PathLike, means: dict) -> pd.DataFrame:
    """An isic-cli metadata.csv typed and imputed exactly as the metadata stage did for training rows."""
    path = Path(csv_path)
    if not path.exists():
        raise PipelineError(f"metadata file {path} not found")
    raw = read_csv(path, "repair it or pass another --metadata", dtype=str, keep_default_na=False,
                   na_values=[""])  # as raw_layout.read_metadata
    if "isic_id" not in raw.columns:
        raise PipelineError(f"{path} has no 'isic_id' column; is it in isic-cli's layout?")
    frame = typed(raw).drop_duplicates("isic_id", keep="first")
    # As the local source reads ages for training and external sets (exact ages to the archive's 5-year
    # steps, a negative one missing), so a case scores the same here as in evaluate.
    age = frame["age_approx"]
    frame["age_approx"] = age.where(age >= 0).map(lambda a: a if pd.isna(a) else float(round_age(a)))
    for column in NUMERIC:
        frame[f"{column}_missing"] = frame[column].isna()
    for column in NUMERIC:
        if column in means:  # imputed at training time: the train mean (0 where train had none)
            frame[column] = frame[column].fillna(0.0 if means[column] is None else means[column])
    return frame.set_index("isic_id", drop=False)


def _columns(trained: Bundle) -> list[str]:
    return [f"p_{c}" for c in trained.classes]


def _rows_for(trained: Bundle, probs: np.ndarray, settings: Settings) -> list[dict]:
    p = settings.calibration(probs)
    rows = []
    if trained.task.binary:
        for x in np.atleast_1d(p):
            rows.append({"p_benign": round(1 - float(x), 6), "p_malignant": round(float(x), 6),
                         "predicted": trained.classes[int(x >= settings.threshold)]})
    else:
        for x in p:
            rows.append({**{f"p_{c}": round(float(v), 6) for c, v in zip(trained.classes, x)},
                         "predicted": trained.classes[int(np.argmax(x))]})
    return rows


def run(model_dir: str | os.PathLike, paths: list[str | os.PathLike], out: str | os.PathLike,
        metadata: str | os.PathLike | None = None, gradcam_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    trained = Bundle(model_dir)
    name = trained.name
    chosen = decision_settings(trained)
    if trained.trained_on == "synthetic":
        log.warning("predict: %s was trained on SYNTHETIC data (the pipeline's self-test): its scores say nothing "
                    "about real lesions", name)
    if trained.uses_metadata and metadata is None:
        raise PipelineError(f"variant {name} ({trained.kind.name}) uses metadata: pass --metadata METADATA.csv "
                            "(isic-cli columns: isic_id, age_approx, sex, anatom_site_1, ...)")
    table = prepare_metadata(metadata, trained.imputation_means) if (metadata and trained.uses_metadata) else None
    if metadata and not trained.uses_metadata:
        log.info("predict: variant %s uses images only; --metadata is ignored", name)
    files = collect(paths)
    if not files and table is not None and not trained.uses_images:
        items = [(str(i), "") for i in table.index]  # a metadata model with no files: every metadata row
    else:
        items = [(f.stem, str(f)) for f in files]
    if not items:
        packed = [str(p) for p in paths if is_packed(p)]
        if packed:
            raise PipelineError(f"no image files in {packed[0]}: {UNPACK_HINT}, then predict on DEST.")
        raise PipelineError(("no image files found in " + ", ".join(map(str, paths))) if paths else
                            "no image files given")
    size = int(trained.input_size or 0)
    if trained.uses_images and not size:
        raise PipelineError(f"{model_dir}/bundle.json has no input image_size; retrain the variant")
    log.info("predict: %s (%s, %s) on %d file(s); threshold %s from %s%s%s%s", name, trained.kind.name,
             trained.task.name, len(items), chosen.threshold, chosen.origin,
             f", temperature {chosen.calibration.temperature}" if chosen.calibration.method != "none" else "",
             f", test-time augmentation {chosen.tta}" if chosen.tta != "none" else "",
             f", decoding {trained.decoding.changed()}" if trained.uses_images and not trained.decoding.default else "")

    names = _unique_names([i for i, _ in items])
    records = []
    for start in range(0, len(items), BATCH):
        records += _score_batch(trained, items[start:start + BATCH], names[start:start + BATCH], size, table,
                                chosen, gradcam_dir)
    columns = ["isic_id", "path"] + _columns(trained) + ["predicted", "error"]
    frame = pd.DataFrame(records, columns=columns)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    failed = int(frame["error"].notna().sum())
    log.info("predict: %d scored, %d failed -> %s", len(frame) - failed, failed, out)
    return frame


def _unique_names(ids: list[str]) -> list[str]:
    """File names for the Grad-CAM images: the isic_id, with -2, -3 ... where two files share it."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}-{seen[i]}")
    return out


def _read(path: str, size: int, decoding: Decoding | None = None) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return load_image(path, size, decoding=decoding)
    except Exception as exc:
        raise OSError(f"unreadable image ({type(exc).__name__}: {exc})") from exc


def _score_batch(trained: Bundle, items: list[tuple[str, str]], names: list[str], size: int,
                 table: pd.DataFrame | None, settings: Settings, gradcam_dir) -> list[dict]:
    records = [{"isic_id": i, "path": p, "error": None} for i, p in items]
    images, ok = [], []
    for k, (isic_id, path) in enumerate(items):
        try:
            if table is not None and isic_id not in table.index:
                raise LookupError(f"no row for isic_id {isic_id} in the metadata CSV")
            if trained.uses_images:
                images.append(_read(path, size, trained.decoding))
            ok.append(k)
        except Exception as exc:  # any decoder or lookup error: this file is reported, the rest scored
            message = str(exc) if isinstance(exc, (LookupError, FileNotFoundError)) else f"{type(exc).__name__}: {exc}"
            records[k]["error"] = message
            log.warning("predict: %s: %s", path or isic_id, message)
    if not ok:
        return records
    meta = table.loc[[items[k][0] for k in ok]] if table is not None else None
    pixels = np.stack(images) if trained.uses_images else None
    probs = trained.predict(meta, pixels, tta=settings.tta)
    for k, row in zip(ok, _rows_for(trained, probs, settings)):
        records[k].update(row)
    if gradcam_dir and trained.uses_images:
        _gradcam(trained, [names[k] for k in ok], pixels, meta, probs, settings, Path(gradcam_dir))
    return records


def _gradcam(trained: Bundle, names: list[str], pixels: np.ndarray, meta, probs, settings: Settings,
             folder: Path) -> None:
    """One PNG per image, <folder>/<isic_id>.png: the image and its Grad-CAM overlay."""
    from . import figures, gradcam

    cams, _ = gradcam.heatmaps(trained.model, pixels, trained.metadata_matrix(meta))
    folder.mkdir(parents=True, exist_ok=True)
    p = settings.calibration(probs)
    for name, image, cam, score in zip(names, pixels, cams, p):
        if trained.task.binary:
            caption = f"{name}: P(malignant) {float(score):.2f}"
        else:
            caption = f"{name}: {trained.classes[int(np.argmax(score))]} {float(np.max(score)):.2f}"
        figures.image_grid([{"image": image, "overlay": gradcam.overlay(image, cam), "caption": caption}],
                           folder / f"{name}.png", "Grad-CAM (red = strongest evidence)", columns=1)
