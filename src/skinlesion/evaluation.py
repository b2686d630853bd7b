"""The evaluate stage: score val and test, calibrate and pick the threshold on val, measure on the test set
and on every external test set.

    results/variants/<variant>/metrics.json      the headline metrics of the natural test set (and of each
                                                 external set), with intervals: what DVC lists (`dvc metrics`,
                                                 `dvc exp show`); see HEADLINE
    results/variants/<variant>/evaluation.json   everything: val and test_natural metrics with group-bootstrap
                                                 95% intervals, PPV / NPV at stated prevalences (50% and the
                                                 train split's); `external: {<name>: ...}`, the same metrics
                                                 on each external set (evaluate.external, prepared by the
                                                 external stage) at the validation threshold, with the
                                                 threshold-transfer block; calibration
    results/variants/<variant>/plots/            DVC plot data, natural test set: roc.csv, pr.csv (micro-averaged
                                                 one-vs-rest for multiclass), confusion.csv, calibration.csv
                                                 (reliability bins); history.csv (training)
    results/variants/<variant>/predictions.csv   isic_id, group, split, label, probabilities, predicted (val + test,
                                                 then each external set as split "external:<name>")
    results/variants/<variant>/figures/          PNG: roc, pr, confusion, reliability, training, gradcam
    bundles/<variant>/                           the complete model bundle (skinlesion.bundle): the trained model
                                                 with the threshold and calibration chosen here, for predict

With `evaluate.tta: flips` every image's score is the mean of the scores of its four flips (identity,
horizontal, vertical, both: Bundle.predict), on validation (so the threshold is chosen on the scores it will
be applied to), test and every external set alike; the bundle's decision records it, so predict does the
same. With the default (none) nothing about it is written, as before the option existed.

With `evaluate.calibration: temperature` the temperature is fitted on val; the threshold is then chosen
on the calibrated val scores and every thresholded metric uses calibrated probabilities (rank metrics
are unchanged by it). docs/evaluation.md explains every number and figure.

There is no "balanced test set": ROC AUC, sensitivity and specificity do not depend on prevalence, so a
class-balanced subsample of the test set only added subsampling noise to them. What does depend on it, the
predictive values, is given at stated prevalences instead (ppv_at_50_prevalence, npv_at_train_prevalence ...:
Bayes' rule on the set's sensitivity and specificity, intervals from the same bootstrap).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from . import __version__, dataset, external_sets, figures, images, metric_catalog, metrics, overlap
from .bundle import Bundle
from .calibration import Calibrator, ece, reliability
from .errors import PipelineError
from .io import atomic_path, write_json
from .metadata import load as load_table
from .reproducibility import seed_everything
from .tasks import Task

log = logging.getLogger(__name__)
# What evaluate writes into results/variants/<variant>: a folder holding only these is an earlier output.
OUTPUTS = ("evaluation.json", "metrics.json", "plots", "figures", "predictions.csv")
DEFAULTS = {"threshold": "youden", "target_sensitivity": 0.9, "bootstrap": 1000, "calibration": "none",
            "calibration_bins": 10, "gradcam_per_outcome": 2, "tta": "none"}


# What metrics.json keeps of the natural test set's block, per task (metric_catalog: Metric.headline): few
# enough that `dvc exp show` stays readable with every variant; the rest is in evaluation.json.
HEADLINE = {task: metric_catalog.headline_keys(task) for task in (metric_catalog.BINARY, metric_catalog.MULTICLASS)}
HEADLINE_VIEW = metric_catalog.headline_keys(metric_catalog.VIEW)  # of a multiclass block's malignant_vs_benign


def _headline_block(block: dict, task: str) -> dict:
    out = {k: block.get(k) for k in HEADLINE[task]}
    if task != "binary":
        out["malignant_vs_benign"] = {k: (block["malignant_vs_benign"] or {}).get(k) for k in HEADLINE_VIEW}
    return out


def headline(result: dict) -> dict:
    """metrics.json: the headline of evaluation.json (multiclass adds its malignant-vs-benign view), and of
    each external set where there are any."""
    out = {"test_natural": _headline_block(result["test_natural"], result["task"])}
    if result.get("external"):
        out["external"] = {name: _headline_block(block, result["task"]) for name, block in result["external"].items()}
    return out


def settings(params: dict) -> dict:
    return {**DEFAULTS, **(params.get("evaluate") or {})}


def _score(trained: Bundle, split: dataset.Split, tta: str = "none") -> np.ndarray:
    pixels = split.images() if trained.uses_images else None
    return trained.predict(split.table, pixels, tta=tta)


def check_decoding(trained: Bundle, shards_dir, what: str) -> None:
    """Images scored by `trained` must have been decoded as its training images were (images.Decoding)."""
    if not trained.uses_images:
        return
    have, want = images.decoding_of(shards_dir), trained.decoding
    if have != want:
        raise PipelineError(f"{what} ({shards_dir}) was decoded with {have} but variant {trained.name} was trained on "
                            f"images decoded with {want}: rerun the external stage with the same `images:` params.")


@dataclass
class Scores:
    """A split's rows, labels, group codes, model probabilities (raw) and calibrated probabilities (p)."""

    table: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray
    raw: np.ndarray
    p: np.ndarray

    @classmethod
    def of(cls, split: dataset.Split, task: Task, raw: np.ndarray, calibrate: Calibrator) -> "Scores":
        groups = metrics.group_codes(split.table["group"].to_numpy(), len(split))
        return cls(split.table, split.labels(task), groups, raw, calibrate(raw))

    def subset(self, rows: np.ndarray) -> "Scores":
        return Scores(self.table.iloc[rows].reset_index(drop=True), self.y[rows],
                      metrics.group_codes(self.groups[rows], len(rows)), self.raw[rows], self.p[rows])


def external_split(external_dir, set_name: str, task: Task) -> dataset.Split:
    """One prepared external set as a Split (all its rows), restricted as load_splits restricts test."""
    table_path, shards_dir = external_sets.load(external_dir, set_name)
    table = load_table(table_path)
    index = pd.read_parquet(shards_dir / "index.parquet", columns=["isic_id", "shard", "row"])
    table = table.merge(index, on="isic_id", how="inner")
    table = table[table[task.label_column].notna()]
    return dataset.Split(table.sort_values("isic_id").reset_index(drop=True), shards_dir)


def prevalences(train: dataset.Split, task: Task) -> dict[str, float]:
    """The prevalences PPV and NPV are stated at: 50%, and the train split's share of malignant images."""
    y = train.labels(task)
    malignant = y if task.binary else (y != 0)
    return {"50": 0.5, "train": round(float(np.mean(malignant)), 6) if len(y) else 0.5}


TRANSFER_NOTE = ("internal: the threshold chosen on the internal validation split, as the model would be used; "
                 "own: the threshold the same rule (evaluate.threshold) picks on this external set itself, an "
                 "oracle that needs the external labels: optimistic, an upper reference, not an estimate")


def threshold_transfer(block: dict, y: np.ndarray, p: np.ndarray, groups: np.ndarray, internal: dict, cfg: dict,
                       n_boot: int, seed: int) -> dict:
    """Sensitivity and specificity of an external set at the internal (validation) threshold against those at
    the set's own best threshold, with the internal test set's for reference."""
    own_t = metrics.choose_threshold(y, p, cfg["threshold"], cfg["target_sensitivity"], "external")
    own = metrics.binary(y, p, own_t, groups, n_boot, seed)
    keys = ("sensitivity", "specificity")
    out = {"rule": cfg["threshold"] + (f" (target sensitivity {cfg['target_sensitivity']})"
                                       if cfg["threshold"] == "sensitivity" else ""),
           "internal_threshold": block["threshold"],
           "internal_test": {k: internal.get(k) for k in keys + tuple(f"{k}_ci95" for k in keys)},
           "at_internal_threshold": {k: block.get(k) for k in keys + tuple(f"{k}_ci95" for k in keys)},
           "own_threshold": own["threshold"],
           "at_own_threshold": {k: own.get(k) for k in keys + tuple(f"{k}_ci95" for k in keys)},
           "note": TRANSFER_NOTE}
    return out


def run(params: dict, name: str, model_dir, table, shards, out, external_dir=None, bundle_out=None) -> dict:
    seed = params["seed"]
    cfg = settings(params)
    trained = Bundle(model_dir)
    task = trained.task
    seed_everything(seed, tensorflow=trained.kind.keras)
    splits = dataset.load_splits(table, shards, task)
    val_split, test_split = splits["val"], splits["test"]
    ext_names = [entry["name"] for entry in external_sets.sets(params)]
    if ext_names and external_dir is None:
        raise PipelineError(f"evaluate.external names {', '.join(ext_names)} but no --external folder was given.")
    ext_splits = {n: external_split(external_dir, n, task) for n in ext_names}
    for n, s in ext_splits.items():
        check_decoding(trained, s.shards_dir, f"external set {n}")
        overlap.check(list(splits.values()), s, f"external set {n}",
                      "remove those images from the set's folder (evaluate.external), then rerun.")
    tta = cfg["tta"]
    raw_val, raw_test = _score(trained, val_split, tta), _score(trained, test_split, tta)
    y_val = val_split.labels(task)
    calibrate = Calibrator.fit(cfg["calibration"], y_val, raw_val)
    val = Scores.of(val_split, task, raw_val, calibrate)
    test = Scores.of(test_split, task, raw_test, calibrate)
    ext = {n: Scores.of(s, task, _score(trained, s, tta), calibrate) for n, s in ext_splits.items()}
    sets = {"test_natural": test, "val": val}
    n_boot, bins = int(cfg["bootstrap"]), int(cfg["calibration_bins"])
    prev = prevalences(splits["train"], task)

    result = {"variant": name, "task": task.name, "kind": trained.kind.name,
              "imagenet_weights": trained.weights.get("imagenet"), "weights": trained.weights.get("source"),
              "bootstrap": {"replicates": n_boot, "unit": "group (patient or lesion)", "level": metrics.CI_LEVEL,
                            "seed": seed},
              "calibration": {"method": calibrate.method, "temperature": calibrate.temperature, "bins": bins,
                              "fitted_on": "val"}}
    if tta != "none":  # absent: none (the same evaluation.json as before the option)
        result["tta"] = tta
    # Every set gets the same metric code, the same threshold (chosen on val) and the same bootstrap.
    scored = {**sets, **{f"external:{n}": s for n, s in ext.items()}}
    blocks = {}
    t_mal = None
    if task.binary:
        threshold = metrics.choose_threshold(val.y, val.p, cfg["threshold"], cfg["target_sensitivity"])
        for key, s in scored.items():
            blocks[key] = metrics.binary(s.y, s.p, threshold, s.groups, n_boot, seed, prev)
        pred_test = (test.p >= threshold).astype(int)
    else:
        threshold = None
        for key, s in scored.items():
            block = metrics.multiclass(s.y, s.p, trained.classes, s.groups, n_boot, seed)
            block["malignant_vs_benign"] = None  # filled below, with its own validation threshold
            blocks[key] = block
        # The five-class model also gives a malignancy score, 1 - P(benign): the binary question.
        t_mal = metrics.choose_threshold(*task.malignancy(val.y, val.p), cfg["threshold"], cfg["target_sensitivity"],
                                         "validation (malignant vs benign)")
        for key, s in scored.items():
            blocks[key]["malignant_vs_benign"] = metrics.binary(*task.malignancy(s.y, s.p), t_mal, s.groups, n_boot,
                                                                seed, prev)
        pred_test = test.p.argmax(axis=1)
    for key, s in scored.items():
        blocks[key]["ece"] = metrics._r(ece(s.y, s.p, bins))
        if calibrate.method != "none":
            blocks[key]["ece_uncalibrated"] = metrics._r(ece(s.y, s.raw, bins))
    for key in sets:
        result[key] = blocks[key]
    if ext:
        result["external"] = {}
        for n, s in ext.items():
            block = blocks[f"external:{n}"]
            binary_block = block if task.binary else block["malignant_vs_benign"]
            internal = result["test_natural"] if task.binary else result["test_natural"]["malignant_vs_benign"]
            y_bin, p_bin = task.malignancy(s.y, s.p)
            block["threshold_transfer"] = (threshold_transfer(binary_block, y_bin, p_bin, s.groups, internal, cfg,
                                                              n_boot, seed) if len(np.unique(y_bin)) == 2 else None)
            result["external"][n] = block
    decision = {"threshold": threshold, "malignancy_threshold": t_mal, "rule": cfg["threshold"],
                "target_sensitivity": cfg["target_sensitivity"] if cfg["threshold"] == "sensitivity" else None,
                "calibration": calibrate.method, "temperature": calibrate.temperature,
                "chosen_on": "the internal validation split", "evaluated_by": f"skinlesion {__version__}"}
    if tta != "none":  # predict and recalibrate score with it too (Bundle.tta); absent: none
        decision["tta"] = tta

    with atomic_path(out, mark=OUTPUTS) as tmp:
        (tmp / "plots").mkdir(parents=True)
        (tmp / "figures").mkdir()
        _plots_and_figures(tmp, name, trained, test, ext, result, pred_test, bins)
        if trained.uses_images and int(cfg["gradcam_per_outcome"]) > 0:
            _gradcam(tmp, name, trained, test_split, test, threshold, int(cfg["gradcam_per_outcome"]), seed)
        _predictions(tmp, trained, val, test, threshold, calibrate, ext)
        _history(tmp, name, Path(model_dir) / "history.csv")
        write_json(tmp / "evaluation.json", result)
        write_json(tmp / "metrics.json", headline(result))
    # default: bundles/<variant> beside models/<variant>
    trained.complete(bundle_out or Path(model_dir).parent.parent / "bundles" / Path(model_dir).name, decision)
    natural = result["test_natural"]
    log.info("evaluate %s: test (natural) %s", name,
             {k: natural[k] for k in ("roc_auc", "pauc_above_80_tpr", "sensitivity", "specificity", "balanced_accuracy",
                                      "macro_roc_auc_ovr", "ece") if k in natural})
    return result


def _curves(out: Path, y, p) -> None:
    fpr, tpr, thr = skm.roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(thr, 0, 1)}).round(6).to_csv(
        out / "plots" / "roc.csv", index=False)
    precision, recall, _ = skm.precision_recall_curve(y, p)
    pd.DataFrame({"recall": recall, "precision": precision}).round(6).to_csv(out / "plots" / "pr.csv", index=False)


def _ci_text(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci95")
    value = m.get(key)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci['low']:.2f}-{ci['high']:.2f}]" if ci else "")


def _plots_and_figures(out: Path, name: str, trained: Bundle, test: Scores, ext: dict[str, Scores], result: dict,
                       pred: np.ndarray, bins: int) -> None:
    classes, fig_dir = trained.classes, out / "figures"
    natural_m = result["test_natural"]
    if trained.task.binary:
        _curves(out, test.y, test.p)
        curves = {f"test set, AUC {_ci_text(natural_m, 'roc_auc')}": (test.y, test.p)}
        for n, s in ext.items():
            if len(np.unique(s.y)) == 2:
                curves[f"external {n}, AUC {_ci_text(result['external'][n], 'roc_auc')}"] = (s.y, s.p)
        t = natural_m["threshold"]
        op = {f"threshold {t:.3f} from validation: sens {natural_m['sensitivity'] or 0:.2f}, "
              f"spec {natural_m['specificity'] or 0:.2f}": (1 - (natural_m["specificity"] or 0),
                                                            natural_m["sensitivity"] or 0)}
        figures.roc(curves, fig_dir / "roc.png", f"{name}: ROC (95% CI by group bootstrap)", op, show_auc=False)
        figures.pr({"test set": (test.y, test.p),
                    **{f"external {n}": (s.y, s.p) for n, s in ext.items() if len(np.unique(s.y)) == 2}},
                   fig_dir / "pr.png", f"{name}: precision-recall")
        subtitle = f"threshold {t:.3f}"
        reliability_label = "Predicted P(malignant)"
    else:
        onehot = np.eye(len(classes), dtype=int)[test.y]
        _curves(out, onehot.ravel(), test.p.ravel())  # micro-averaged one-vs-rest
        figures.roc_ovr(test.y, test.p, classes, fig_dir / "roc.png",
                        f"{name}: one-vs-rest ROC (test, natural)")
        y_mal, p_mal = (test.y != 0).astype(int), 1 - test.p[:, 0]
        if len(np.unique(y_mal)) == 2:
            figures.pr({"malignant (any class) vs benign, score 1 - P(benign)": (y_mal, p_mal)},
                       fig_dir / "pr.png", f"{name}: precision-recall, malignant vs benign")
        subtitle = "predicted class = highest probability"
        reliability_label = "Confidence (highest class probability)"
    figures.confusion(test.y, pred, classes, fig_dir / "confusion.png", f"{name}: test set (natural), {subtitle}")
    pd.DataFrame({"actual": [classes[i] for i in test.y], "predicted": [classes[i] for i in pred]}).to_csv(
        out / "plots" / "confusion.csv", index=False)
    table = reliability(test.y, test.p, bins)
    # Empty bins have no mean: left out of the plot data (the counts are in the figure).
    table[table["count"] > 0].round(6).to_csv(out / "plots" / "calibration.csv", index=False)
    tables = {}
    if result["calibration"]["method"] != "none":
        tables[f"before (ECE {natural_m['ece_uncalibrated']:.3f})"] = reliability(test.y, test.raw, bins)
        tables[f"after temperature {result['calibration']['temperature']:.2f} (ECE {natural_m['ece']:.3f})"] = table
    else:
        tables[f"model output (ECE {natural_m['ece']:.3f})"] = table
    figures.reliability(tables, fig_dir / "reliability.png", f"{name}: reliability (test, natural)", reliability_label)


def _gradcam(out: Path, name: str, trained: Bundle, split: dataset.Split, test: Scores, threshold,
             per_outcome: int, seed: int) -> None:
    from . import gradcam

    if trained.task.binary:
        y, pred = test.y, (test.p >= threshold).astype(int)
    else:  # outcomes of the malignancy question; the map shows the evidence for the predicted class
        y, pred = (test.y != 0).astype(int), (test.p.argmax(axis=1) != 0).astype(int)
    picked = gradcam.sample_outcomes(y, pred, per_outcome, seed)
    if not picked:
        return
    rows = np.array([i for _, i in picked])
    images = dataset.Split(split.table.iloc[rows].reset_index(drop=True), split.shards_dir).images()
    meta = trained.metadata_matrix(split.table.iloc[rows])
    cams, _ = gradcam.heatmaps(trained.model, images, meta)
    items = []
    for (outcome, i), image, cam in zip(picked, images, cams):
        p = test.p[i]
        if trained.task.binary:
            caption = f"{outcome}\n{split.table['isic_id'].iloc[i]} P(mal)={p:.2f}"
        else:
            caption = (f"{outcome}\n{trained.classes[test.y[i]]} -> {trained.classes[int(p.argmax())]} "
                       f"({p.max():.2f})")
        if not cam.max() > 0:
            caption += "\n(no positive evidence)"
        items.append({"image": image, "overlay": gradcam.overlay(image, cam), "caption": caption})
    figures.image_grid(items, out / "figures" / "gradcam.png",
                       f"{name}: Grad-CAM on a seeded sample of test images (red = strongest evidence)")


def _predictions(out: Path, trained: Bundle, val: Scores, test: Scores, threshold, calibrate: Calibrator,
                 ext: dict[str, Scores] | None = None) -> None:
    parts = [val, test] + list((ext or {}).values())
    tables = [val.table, test.table] + [s.table.assign(split=f"external:{n}") for n, s in (ext or {}).items()]
    predictions = pd.concat(tables, ignore_index=True)[["isic_id", "group", "split"]]
    predictions["label"] = np.concatenate([s.y for s in parts])
    raw = np.concatenate([s.raw for s in parts])
    p = np.concatenate([s.p for s in parts])
    if trained.task.binary:
        predictions["p_malignant"] = np.round(raw, 6)
        if calibrate.method != "none":
            predictions["p_malignant_calibrated"] = np.round(p, 6)
        predictions["predicted"] = (p >= threshold).astype(int)
    else:
        for i, c in enumerate(trained.classes):
            predictions[f"p_{c}"] = np.round(raw[:, i], 6)
        if calibrate.method != "none":
            for i, c in enumerate(trained.classes):
                predictions[f"p_{c}_calibrated"] = np.round(p[:, i], 6)
        predictions["predicted"] = p.argmax(axis=1)
    predictions.to_csv(out / "predictions.csv", index=False)


def _history(out: Path, name: str, history: Path) -> None:
    """Training history as plot data (always, header-only for epoch-less models) and as a figure (if any)."""
    if not history.exists():
        pd.DataFrame(columns=["epoch", "phase", "loss", "val_loss"]).to_csv(out / "plots" / "history.csv", index=False)
        return
    frame = pd.read_csv(history)
    frame.to_csv(out / "plots" / "history.csv", index=False)
    if len(frame):
        figures.history(frame, out / "figures" / "training.png", f"{name}: training history")
