"""`skinlesion recalibrate`: a bundle's threshold (and temperature) refitted on a local labelled set."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from skinlesion import bundle, cli, features, linear_model, prediction, recalibration, tasks
from skinlesion.bundle import Bundle
from skinlesion.calibration import fit_temperature
from skinlesion.io import read_json
from skinlesion.variant import of as variant

MEANS = {"age_approx": 50.0, "clin_size_long_diam_mm": 5.0}
TARGET = 0.9


def _table(ages, rng) -> pd.DataFrame:
    n = len(ages)
    return pd.DataFrame({"age_approx": ages, "age_approx_missing": False, "sex": rng.choice(["male", "female"], n),
                         "clin_size_long_diam_mm": rng.uniform(2, 10, n), "clin_size_long_diam_mm_missing": False,
                         "anatom_site_1": "Trunk"})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A metadata logreg bundle as evaluate writes it: older patients score higher. Its decision is a poor fit
    for the local set below (threshold 0.9 on scores softened by temperature 2), as a transferred one can be."""
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(100), np.zeros(200)].astype(int)
    ages = np.where(y == 1, rng.normal(65, 12, len(y)), rng.normal(45, 12, len(y)))
    v = variant({"name": "lr", "kind": "logreg", "task": "binary"})
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features.matrix(_table(ages, rng), list(v.features)), y)
    trained = tmp_path_factory.mktemp("models") / "lr"
    trained.mkdir()
    linear_model.save(trained / "model.npz", model, list(v.features), 2)
    bundle.seal(trained, bundle.manifest(v, input_size=None, imputation_means=MEANS,
                                         training_data={"source": "local"}, weights={}))
    return Bundle(trained).complete(trained.parent / "bundle", {
        "threshold": 0.9, "malignancy_threshold": None, "rule": "youden", "target_sensitivity": None,
        "calibration": "temperature", "temperature": 2.0, "chosen_on": "the internal validation split"})


def _records(n_malignant: int, n_benign: int, seed: int = 0, labelled: bool = True) -> list[dict]:
    """A clinic's cases, one patient each; malignant ones older, with overlap (scores do not separate fully)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_malignant + n_benign):
        malignant = i < n_malignant
        row = {"isic_id": f"ISIC_{i:07d}", "patient_id": f"IP_{i:07d}", "sex": "male" if i % 2 else "female",
               # in 5-year steps, as the archive gives ages (the local source rounds others to them, predict not)
               "age_approx": str(5 * int(round(rng.normal(62 if malignant else 48, 10) / 5))),
               "clin_size_long_diam_mm": f"{rng.uniform(2, 10):.1f}", "anatom_site_1": "Trunk"}
        if labelled:
            row.update({"diagnosis_1": "Malignant" if malignant else "Benign",
                        "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)" if malignant
                        else "Benign melanocytic proliferations",
                        "diagnosis_3": "Melanoma Invasive" if malignant else "Nevus"})
        rows.append(row)
    return rows


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_recalibrated_bundle_reaches_the_target_and_predict_uses_it(evaluated, make_raw, tmp_path, capsys):
    clinic = make_raw(_records(25, 50), name="clinic")
    before = _digest(evaluated)
    out, report = tmp_path / "recal", tmp_path / "report.json"
    rc = cli.main(["recalibrate", str(evaluated), str(clinic), "--target-sensitivity", str(TARGET), "-o", str(out),
                   "--bootstrap", "200", "--cv", "5", "--seed", "3", "--report", str(report)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert _digest(evaluated) == before  # the original bundle is never modified
    result = read_json(report)
    manifest = read_json(out / bundle.MANIFEST)
    assert manifest["recalibration"] == result  # the report is the provenance block
    decision = manifest["decision"]
    assert decision["threshold"] == pytest.approx(result["threshold"], abs=1e-6)
    assert decision["rule"] == "sensitivity" and decision["target_sensitivity"] == TARGET
    assert (out / "model.npz").read_bytes() == (evaluated / "model.npz").read_bytes()

    # The refit, checked against an independent reading of the same CSV (predict's path, the bundle's means).
    labels = pd.read_csv(clinic / "metadata.csv").set_index("isic_id")["diagnosis_1"].eq("Malignant").astype(int)
    table = prediction.prepare_metadata(clinic / "metadata.csv", MEANS)
    raw = Bundle(evaluated).predict(table)
    y = labels.loc[table.index].to_numpy()
    assert result["calibration"] == "temperature" and decision["temperature"] == fit_temperature(y, raw) != 2.0

    # predict with the new bundle: the new threshold, reaching the target on the set; the old one did not.
    new = prediction.run(out, [], tmp_path / "new.csv", metadata=clinic / "metadata.csv").set_index("isic_id")
    old = prediction.run(evaluated, [], tmp_path / "old.csv", metadata=clinic / "metadata.csv").set_index("isic_id")
    truth = labels.loc[new.index].to_numpy()
    new_pos, old_pos = new["predicted"].eq("malignant").to_numpy(), old["predicted"].eq("malignant").to_numpy()
    assert new_pos[truth == 1].mean() >= TARGET > old_pos[truth == 1].mean()
    assert (old_pos <= new_pos).all() and new_pos.sum() > old_pos.sum()  # a lower threshold: only benign -> malignant
    assert result["bootstrap"]["in_sample"]["sensitivity"] == pytest.approx(new_pos[truth == 1].mean(), abs=1e-6)

    # The threshold's bootstrap interval: ordered, holding the point.
    boot = result["bootstrap"]
    ci = boot["threshold_ci95"]
    assert boot["usable_replicates"] == 200
    assert ci["low"] <= boot["threshold_median"] <= ci["high"] and ci["low"] <= result["threshold"] <= ci["high"]
    assert ci["low"] < ci["high"]  # overlapping scores: the threshold does move between resamples
    for key in ("sensitivity", "specificity"):
        s = boot["in_sample"]
        assert s[f"{key}_ci95"]["low"] <= s[key] <= s[f"{key}_ci95"]["high"]

    # Cross-validation: every case held out exactly once.
    cv = result["cross_validation"]
    assert len(cv["folds"]) == 5 and sum(f["n"] for f in cv["folds"]) == 75
    assert sum(f["n_malignant"] for f in cv["folds"]) == 25
    pooled = cv["pooled_out_of_fold"]
    assert pooled["tp"] + pooled["fn"] == 25 and pooled["tn"] + pooled["fp"] == 50
    assert cv["original_decision"]["sensitivity"] == pytest.approx(old_pos[truth == 1].mean(), abs=1e-6)

    # Provenance.
    local = result["local_set"]
    assert (local["folder"], local["cases"], local["malignant"], local["benign"]) == ("clinic", 75, 25, 50)
    assert local["content_sha256"] == recalibration.content_sha256(clinic) and len(local["content_sha256"]) == 64
    assert result["previous_decision"]["threshold"] == 0.9 and result["previous_decision"]["temperature"] == 2.0
    for key in ("target_sensitivity", "temperature", "seed", "skinlesion_version", "created_utc"):
        assert result[key] is not None, key
    assert (boot["replicates"], boot["seed"], cv["k"]) == (200, 3, 5)
    # The summary a person reads.
    assert "5-fold CV (report this)" in printed and "original decision (transferred)" in printed
    assert f"-> {out}" in printed


def test_an_image_bundle_with_its_labels_csv_kept_apart(cnn_dir, make_raw, tmp_path):
    """The image path: the set's images decoded at the bundle's input size (the external stage's shards) and
    scored as predict scores them; the labels in a CSV outside the folder (--metadata); no calibration."""
    records = _records(15, 30, seed=2)
    clinic = make_raw(records, name="clinic")
    rng = np.random.default_rng(2)
    for r in records:  # the tiny CNN scores brightness: malignant cases brighter, with overlap
        level = rng.normal(150 if r["diagnosis_1"] == "Malignant" else 110, 25)
        pixels = np.clip(rng.normal(level, 10, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(clinic / "images" / f"{r['isic_id']}.jpg", quality=95)
    labels_csv = shutil.move(clinic / "metadata.csv", tmp_path / "labels.csv")
    old = Bundle(cnn_dir).complete(tmp_path / "evaluated", {"threshold": 0.999, "calibration": "none",
                                                              "temperature": 1.0})
    out = tmp_path / "recal"
    result = recalibration.run(old, clinic, out, 0.8, metadata=labels_csv, n_boot=50, k=3, seed=0)
    decision = Bundle(out).decision
    assert (decision["calibration"], decision["temperature"], result["calibration"]) == ("none", 1.0, "none")
    new = prediction.run(out, [clinic / "images"], tmp_path / "new.csv").set_index("isic_id")
    truth = pd.read_csv(labels_csv).set_index("isic_id")["diagnosis_1"].eq("Malignant").loc[new.index].to_numpy()
    sens = new["predicted"].eq("malignant").to_numpy()[truth].mean()
    assert sens >= 0.8 and sens == pytest.approx(result["bootstrap"]["in_sample"]["sensitivity"], abs=1e-6)
    assert result["cross_validation"]["original_decision"]["sensitivity"] == 0.0  # sigmoid(8 b - 2) never reaches 0.999
    local = result["local_set"]
    assert (local["cases"], local["malignant"], local["metadata_csv"]) == (45, 15, "labels.csv")
    assert local["content_sha256"] == recalibration.content_sha256(clinic, tmp_path / "labels.csv")
    assert local["content_sha256"] != recalibration.content_sha256(clinic)
    # train's bundle (no decision): compared at 0.5, as predict would use it
    untouched = recalibration.run(cnn_dir, clinic, tmp_path / "from_train", 0.8, metadata=labels_csv, n_boot=0, k=3)
    assert untouched["previous_decision"] is None and untouched["threshold"] == result["threshold"]
    p = prediction.run(cnn_dir, [clinic / "images"], tmp_path / "p.csv").set_index("isic_id").loc[new.index]
    at_half = untouched["cross_validation"]["original_decision"]
    assert at_half["tp"] == int(p["predicted"].eq("malignant").to_numpy()[truth].sum())
    assert untouched["bootstrap"]["threshold_ci95"] is None  # --bootstrap 0: no interval, not a made-up one


def test_cross_validation_fits_on_training_folds_only():
    """Each fold's threshold is the one fitted on the other folds alone; every case is predicted once."""
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(60)].astype(int)
    raw = 1 / (1 + np.exp(-(rng.normal(0, 1, 90) + 1.5 * y)))
    groups = np.repeat(np.arange(45), 2)  # two images per lesion (of one class): a lesion never straddles folds
    data = recalibration.LocalSet("s", "isic-cli", y, raw, groups, "0" * 64, 90, {}, 0)
    original = recalibration.Fit(recalibration.Calibrator(), 0.5)
    cv = recalibration.cross_validate(data, "none", 0.8, original, 4, seed=7)
    splits = list(StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=7).split(raw, y, groups))
    oof = np.full(90, -1)
    for fold, (train, held) in zip(cv["folds"], splits):
        assert not set(groups[train]) & set(groups[held])
        fitted = recalibration.fit(y[train], raw[train], "none", 0.8)
        assert fold["threshold"] == pytest.approx(fitted.threshold, abs=1e-6) and fold["n"] == len(held)
        oof[held] = raw[held] >= fitted.threshold
    assert sum(f["n"] for f in cv["folds"]) == 90 and (oof >= 0).all()
    pooled = cv["pooled_out_of_fold"]
    assert pooled["tp"] == int(oof[y == 1].sum()) and pooled["fp"] == int(oof[y == 0].sum())


@pytest.mark.parametrize("case, needle", [
    ("target_zero", "--target-sensitivity 0.0 is outside (0, 1]"),
    ("target_above_one", "--target-sensitivity 1.5 is outside (0, 1]"),
    ("no_malignant", "has no malignant case"),
    ("no_benign", "has no benign case"),
    ("too_few_for_folds", "--cv 5 needs at least 5 malignant and 5 benign cases"),
    ("no_labels", "has no labels: none of its 30 cases has a benign or malignant diagnosis"),
    ("images_only", "has no labels: no metadata CSV found"),
    ("no_bundle", "does not exist"),
    ("multiclass", "is a multiclass bundle: recalibration refits a binary threshold"),
    ("out_is_the_bundle", "is the bundle being recalibrated; the original is never modified"),
    ("folder_missing", "is not a folder"),
    ("unreadable_images", "clinic: none of the 30 images in"),
])
def test_bad_input_is_one_clear_line_and_leaves_nothing(case, needle, evaluated, make_raw, tmp_path, capsys):
    records = {"no_malignant": _records(0, 20), "no_benign": _records(20, 0), "too_few_for_folds": _records(3, 30),
               "no_labels": _records(10, 20, labelled=False)}.get(case, _records(10, 20))
    corrupt = tuple(r["isic_id"] for r in records) if case == "unreadable_images" else ()
    clinic = make_raw(records, name="clinic", corrupt=corrupt)
    target = {"target_zero": "0", "target_above_one": "1.5"}.get(case, "0.8")
    model = tmp_path / "absent" if case == "no_bundle" else evaluated
    if case == "multiclass":  # a five-class bundle's manifest: refused before its model is read
        model = shutil.copytree(evaluated, tmp_path / "five")
        info = read_json(model / bundle.MANIFEST)
        bundle.seal(model, {**info, "task": "multiclass", "classes": list(tasks.get("multiclass").classes)})
    if case == "images_only":
        (clinic / "metadata.csv").unlink()
    if case == "folder_missing":
        clinic = tmp_path / "nowhere"
    out = tmp_path / "recal"
    before = _digest(evaluated)
    capsys.readouterr()
    rc = cli.main(["recalibrate", str(model), str(clinic), "--target-sensitivity", target, "-o",
                   str(evaluated if case == "out_is_the_bundle" else out), "--bootstrap", "20"])
    err = capsys.readouterr().err
    assert rc == 2
    # The images stage's progress bar (tqdm, on stderr like every stage's) is not an error line.
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "img/s" not in line]
    assert len(lines) == 1 and lines[0].startswith("skinlesion recalibrate: error: "), err
    assert needle in lines[0] and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".recal*"))  # no bundle, no temporary left behind
    assert _digest(evaluated) == before
    if case == "unreadable_images":
        assert f"in {clinic}/images could be decoded" in lines[0]  # the user's folder, not a temporary copy
    if case == "too_few_for_folds":
        assert "the set has 3 malignant and 30 benign" in lines[0]


def _with_seen(folder, tmp_path, seen: dict):
    """A copy of a bundle with a seen.json, as the train stage writes one, sealed again."""
    import json

    copy = tmp_path / f"{folder.name}-seen"
    shutil.copytree(folder, copy)
    (copy / "seen.json").write_text(json.dumps(seen))
    bundle.seal(copy, read_json(copy / bundle.MANIFEST))
    return copy


def test_a_local_set_overlapping_what_the_model_saw_is_refused_or_left_out_with_counts(evaluated, make_raw,
                                                                                        tmp_path, capsys, caplog):
    clinic = make_raw(_records(25, 50), name="clinic")
    # the model saw two of the clinic's images and a patient of a third (its train or validation split)
    seen = _with_seen(evaluated, tmp_path, {"isic_id": ["ISIC_0000003", "ISIC_0000040"], "lesion_id": [],
                                            "patient_id": ["IP_0000060"], "pixels": [], "pixels_shape": None})
    out = tmp_path / "recal"
    rc = cli.main(["recalibrate", str(seen), str(clinic), "--target-sensitivity", "0.9", "-o", str(out),
                   "--bootstrap", "0", "--cv", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists() and "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("skinlesion recalibrate:"))
    assert line.startswith(f"skinlesion recalibrate: error: {clinic} overlaps") and "3 of its 75 images" in line
    assert "2 by isic_id (e.g. ISIC_0000003, ISIC_0000040)" in line
    assert "1 by patient_id (e.g. ISIC_0000060)" in line and "--exclude-overlap" in line

    report = tmp_path / "report.json"
    assert cli.main(["recalibrate", str(seen), str(clinic), "--target-sensitivity", "0.9", "-o", str(out),
                     "--bootstrap", "0", "--cv", "3", "--exclude-overlap", "--report", str(report)]) == 0
    local = read_json(report)["local_set"]
    assert local["cases"] == 72 and local["overlap_with_training"]["excluded"] == 3
    assert local["overlap_with_training"]["excluded_by"] == {"isic_id": 2, "patient_id": 1}
    assert (out / "seen.json").read_bytes() == (seen / "seen.json").read_bytes()  # it travels with the bundle

    # a bundle from before seen.json: recalibrated, and the report says nothing was checked
    assert cli.main(["recalibrate", str(evaluated), str(clinic), "--target-sensitivity", "0.9", "-o",
                     str(tmp_path / "old"), "--bootstrap", "0", "--cv", "3", "--report", str(report)]) == 0
    assert read_json(report)["local_set"]["overlap_with_training"] == {"checked": False}
    assert "records no seen.json" in caplog.text


def test_an_image_the_model_saw_is_found_by_its_pixels_under_another_name(cnn_dir, make_raw, tmp_path):
    import hashlib as _hashlib

    from skinlesion import images
    from skinlesion.errors import PipelineError

    records = _records(10, 20, seed=4)
    clinic = make_raw(records, name="clinic")
    size = Bundle(cnn_dir).input_size
    renamed = clinic / "images" / f"{records[5]['isic_id']}.jpg"  # a training image, under a clinic's own id
    pixels = images.load_image(renamed, size)
    seen = _with_seen(cnn_dir, tmp_path, {"isic_id": ["ISIC_9999999"], "lesion_id": [], "patient_id": [],
                                          "pixels": [_hashlib.sha256(np.ascontiguousarray(pixels).tobytes())
                                                     .hexdigest()[:32]], "pixels_shape": list(pixels.shape)})
    with pytest.raises(PipelineError, match=rf"1 of its 30 images: 1 by pixels \(e.g. {records[5]['isic_id']}\)"):
        recalibration.run(seen, clinic, tmp_path / "recal", 0.8, n_boot=0, k=3)
    result = recalibration.run(seen, clinic, tmp_path / "recal", 0.8, n_boot=0, k=3, exclude_overlap=True)
    assert result["local_set"]["cases"] == 29 and result["local_set"]["overlap_with_training"]["ways"][-1] == "pixels"


def test_a_damaged_seen_json_is_one_line(evaluated, make_raw, tmp_path):
    from skinlesion.errors import PipelineError

    clinic = make_raw(_records(10, 20), name="clinic")
    for bad, needle in [({"isic_id": "ISIC_1"}, "'isic_id' is not a list"), ([1, 2], "not an object"),
                        ({"isic_id": ["x" * 65]}, "at most 64"), ({"pixels_shape": [1, 2]}, "pixels_shape")]:
        damaged = _with_seen(evaluated, tmp_path / needle.replace("'", "").replace(" ", "_"), bad)
        with pytest.raises(PipelineError, match=needle):
            recalibration.run(damaged, clinic, tmp_path / "recal", 0.8, n_boot=0, k=3)
