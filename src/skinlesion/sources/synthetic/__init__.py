"""The synthetic source: an ISIC-shaped dermoscopy dataset generated offline, with a planted signal.

Same seed and options give byte-identical files (NumPy Generator, Pillow, JPEG at a fixed quality,
no timestamps anywhere). The folder looks like an isic-cli download: images/<isic_id>.jpg,
metadata.csv with the archive's current field names and vocabulary, attribution.txt, licenses/.

Structure
    patients (IP_ + 7 digits) -> 1 or 2 lesions (IL_ + 7 digits) -> 1+ photographs each (ISIC_ + 7 digits).
    `malignant_fraction` of the patients have malignant lesions only; the others benign ones, of which a
    few are diagnosis_1 Indeterminate. A few malignant lesions are outside the study's five classes
    (Keratoacanthoma), so the exclusion paths downstream are exercised. Every photograph of a lesion
    shows the same rendered lesion with a new shift / rotation / zoom / brightness, a new skin texture,
    hair and dermoscope vignette.

Planted signal (deliberately strong, never perfect)
    Each lesion draws a latent "atypia" m in [0, 1]: benign ~ Beta(2, 6.5), malignant ~ Beta(6, 2.5), so the
    two overlap. m drives border irregularity and raggedness, asymmetry, the number of colours and the
    size. Malignant classes also look like themselves: melanoma dark and variegated (black, blue-grey,
    red, white regression) with an atypical network; melanoma metastasis a small dark blue-black nodule;
    basal cell carcinoma a translucent pearly pink lesion with arborizing vessels and blue-grey nests;
    squamous cell carcinoma red with yellow-white keratin scale and dotted vessels. Benign look-alikes
    (dark seborrheic keratoses, red haemangiomas, atypical nevi) keep the task from being trivial.
    Metadata carry the signal too: malignant patients are older, their lesions larger in diameter and
    sited as in the archive (BCC / SCC on the head and neck, melanoma on the trunk).
    Measured on 250 patients (seeds 42 and 7), 128 px, frozen ImageNet MobileNetV2 features + a logistic
    head, patient-grouped 5-fold: ROC AUC 0.96 and 0.99; the misses are pigmented BCCs (30 % of BCCs),
    few-coloured melanomas in situ, small metastases and haemangiomas. A logistic regression on crude
    colour statistics reaches about 0.9 (tests/test_source_synthetic.py checks > 0.8).

The package: cohort.py plans patients, lesions and each image's metadata (no pixels); textures.py holds the
pixel primitives (noise, shapes, networks, dots, vessels); lesions.py has one renderer per kind of lesion;
photo.py turns a rendered lesion into one photograph (pose, skin, hair, vignette, noise) and a JPEG.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ...errors import PipelineError
from ...raw_layout import write_attribution, write_licenses, write_metadata_csv
from .cohort import plan
from .lesions import render_lesion
from .photo import encode_jpeg, photograph

log = logging.getLogger(__name__)

VERSION = 1  # bump when the generator's output changes for the same seed and options
DEFAULTS = {
    "n_patients": 240,
    "images_per_patient": [1, 3],
    "malignant_fraction": 0.3,
    "image_size": 160,
    "missing_fraction": 0.05,
}
JPEG_QUALITY = 90


def fetch(cfg: dict, out: Path, seed: int) -> dict:
    """Generate the dataset into `out` (created here) and return a summary."""
    cfg = _options(cfg)
    out = Path(out)
    (out / "images").mkdir(parents=True)
    lesions, records = plan(cfg, seed)
    size = cfg["image_size"]
    for lesion in lesions:
        layer = render_lesion(lesion, size)
        for isic_id, photo_seed in zip(lesion["isic_ids"], lesion["photo_seeds"]):
            pixels = photograph(layer, lesion, size, np.random.default_rng(photo_seed))
            (out / "images" / f"{isic_id}.jpg").write_bytes(encode_jpeg(pixels, JPEG_QUALITY))
    write_metadata_csv(records, out / "metadata.csv")
    write_attribution(records, out / "attribution.txt")
    write_licenses([r["copyright_license"] for r in records], out / "licenses")
    summary = {
        "generator_version": VERSION,
        "patients": len({r["patient_id"] for r in records}),
        "lesions": len(lesions),
        "diagnosis_1": _count(r["diagnosis_1"] for r in records),
        "diagnosis_3": _count(r["diagnosis_3"] for r in records),
    }
    log.info("synthetic: %d images of %d lesions, %d patients; diagnosis_1 %s", len(records), len(lesions),
             summary["patients"], summary["diagnosis_1"])
    return summary


def _options(cfg: dict) -> dict:
    cfg = {**DEFAULTS, **{k: v for k, v in (cfg or {}).items() if v is not None}}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise PipelineError(f"data.synthetic: unknown option(s) {unknown}. Known: {', '.join(DEFAULTS)}.")
    lo_hi = list(cfg["images_per_patient"])
    if len(lo_hi) != 2 or not 1 <= int(lo_hi[0]) <= int(lo_hi[1]):
        raise PipelineError(f"data.synthetic.images_per_patient must be [lo, hi] with 1 <= lo <= hi, "
                            f"got {cfg['images_per_patient']}.")
    if int(cfg["n_patients"]) < 2:
        raise PipelineError("data.synthetic.n_patients must be at least 2 (one benign, one malignant).")
    if not 0 < float(cfg["malignant_fraction"]) < 1:
        raise PipelineError("data.synthetic.malignant_fraction must lie strictly between 0 and 1.")
    if not 32 <= int(cfg["image_size"]) <= 1024:
        raise PipelineError("data.synthetic.image_size must be between 32 and 1024 pixels.")
    if not 0 <= float(cfg["missing_fraction"]) <= 0.5:
        raise PipelineError("data.synthetic.missing_fraction must be between 0 and 0.5.")
    cfg["images_per_patient"] = [int(lo_hi[0]), int(lo_hi[1])]
    for key in ("n_patients", "image_size"):
        cfg[key] = int(cfg[key])
    return cfg


def _count(values) -> dict:
    return dict(sorted(Counter(values).items()))
