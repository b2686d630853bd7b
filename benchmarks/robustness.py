#!/usr/bin/env python3
"""Robustness to acquisition, measured (issue 11 item 3; docs/robustness.md).

Runs the pipeline's own stage commands (`skinlesion fetch / metadata / images / external / train /
evaluate`) once per arm, in a scratch folder, on the full HAM10000 (local source, lesion-grouped split of
experiments/ham10000/params.yaml: same seed, same split, same training settings) with ISIC 2017 validation
as the external set, and tabulates every arm's evaluation.json:

    baseline        images.aspect squash,       images.colour_constancy none  (today's defaults)
    shades_of_gray  squash,                     shades_of_gray (p = 6)
    centre_crop     centre_crop,                none
    both            centre_crop,                shades_of_gray (p = 6)
    <best>+tta      the arm with the highest VALIDATION ROC AUC of the first variant, its models re-evaluated
                    with evaluate.tta: flips (no retraining: TTA is an evaluate option)

and, in the baseline arm, colour augmentation: the template's mobilenet_frozen_aug (flip, rotation 0.1, zoom
0.1, 5 epochs) against the same variant with colour jitter added (COLOUR_JITTER), mobilenet_frozen_aug_colour.

fetch and metadata run once (work/common) and every arm links to them: they do not depend on the images
options. Each arm's images and external stages, training and evaluation run in work/<arm>. A failing stage
is recorded in the table with its error, and the other arms still run.

    python benchmarks/robustness.py --work /tmp/robust --variants mobilenet_frozen dual_mobilenet_frozen \
        --json docs/robustness.json

Prints the Markdown table (docs/robustness.md) and writes every number to --json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_command import sh  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "experiments" / "ham10000" / "params.yaml"
SOG = {"colour_constancy": "shades_of_gray", "colour_constancy_p": 6}
ARMS = {"baseline": {}, "shades_of_gray": dict(SOG), "centre_crop": {"aspect": "centre_crop"},
        "both": {"aspect": "centre_crop", **SOG}}
EXTERNAL = "isic2017-val"
# Colour jitter added to the template's mobilenet_frozen_aug: brightness +-0.1 x 255, contrast x [0.9, 1.1],
# saturation x [0.67, 1.5], hue +-0.01 of the colour circle (+-3.6 degrees): moderate camera / illuminant changes.
COLOUR_JITTER = {"brightness": 0.1, "contrast": 0.1, "saturation": 0.2, "hue": 0.02}
AUGMENT_PAIR = ("mobilenet_frozen_aug", "mobilenet_frozen_aug_colour")


def params_for(args, images_options: dict, tta: str = "none", augment: bool = False) -> dict:
    p = yaml.safe_load(TEMPLATE.read_text())
    p["data"]["local"]["path"] = str(Path(args.ham).resolve())
    p["train"]["weights"]["mobilenet_v2"] = str((REPO / "weights" / "mobilenet_v2_1.0_224_no_top_imagenet.h5"))
    p["evaluate"]["external"] = [{"name": EXTERNAL, "path": str(Path(args.external).resolve()), "layout": "isic-cli"}]
    p["images"].update(images_options)
    if tta != "none":
        p["evaluate"]["tta"] = tta
    missing = [v for v in args.variants if v not in p["variants"]]
    if missing:
        sys.exit(f"variants not in {TEMPLATE}: {missing}")
    chosen = {v: copy.deepcopy(p["variants"][v]) for v in args.variants}
    if augment:
        aug = copy.deepcopy(p["variants"][AUGMENT_PAIR[0]])
        chosen[AUGMENT_PAIR[0]] = aug
        chosen[AUGMENT_PAIR[1]] = {**copy.deepcopy(aug), "augment": {**aug["augment"], **COLOUR_JITTER}}
    p["variants"] = chosen
    return p


def write_params(folder: Path, params: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def link(folder: Path, target: Path, name: str) -> None:
    dest = folder / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        dest.symlink_to(target.resolve(), target_is_directory=True)


def ci(block: dict | None, key: str):
    if not block or block.get(key) is None:
        return None
    c = block.get(f"{key}_ci95") or {}
    return {"value": block[key], "low": c.get("low"), "high": c.get("high")}


def read_result(folder: Path, variant: str) -> dict:
    e = json.loads((folder / "results" / "variants" / variant / "evaluation.json").read_text())
    ext = (e.get("external") or {}).get(EXTERNAL) or {}
    at = ((ext.get("threshold_transfer") or {}).get("at_internal_threshold")) or {}
    return {"val_roc_auc": ci(e["val"], "roc_auc"), "test_roc_auc": ci(e["test_natural"], "roc_auc"),
            "test_sensitivity": ci(e["test_natural"], "sensitivity"),
            "test_specificity": ci(e["test_natural"], "specificity"),
            "ext_roc_auc": ci(ext, "roc_auc"), "ext_sensitivity": ci(at, "sensitivity"),
            "ext_specificity": ci(at, "specificity"), "threshold": e["test_natural"].get("threshold"),
            "tta": e.get("tta", "none"), "n_test": e["test_natural"].get("n"), "n_ext": ext.get("n")}


def run_arm(args, name: str, options: dict, common: Path, work: Path) -> dict:
    folder = work / name
    augment = name == "baseline" and not args.no_augment
    write_params(folder, params_for(args, options, augment=augment))
    variants = list(args.variants) + (list(AUGMENT_PAIR) if augment else [])
    link(folder, common / "data" / "raw", "data/raw")
    for f in ("metadata.parquet", "metadata_summary.json"):
        dest = folder / "data" / "interim" / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.symlink_to((common / "data" / "interim" / f).resolve())
    log = folder / "run.log"
    seconds, out = {}, {"arm": name, "images": options, "variants": {}}
    table = "data/interim/metadata.parquet"
    try:
        seconds["images"] = sh(["skinlesion", "images", "--table", table, "--raw", "data/raw",
                                "--out", "data/processed/shards"], folder, log)
        seconds["external"] = sh(["skinlesion", "external", "--metadata-summary", "data/interim/metadata_summary.json",
                                  "--out", "data/external"], folder, log)
    except RuntimeError as exc:
        out["error"] = str(exc)
        return {**out, "seconds": seconds}
    for v in variants:
        try:
            seconds[f"train {v}"] = sh(["skinlesion", "train", v, "--table", table, "--shards", "data/processed/shards",
                                        "--out", f"models/{v}"], folder, log)
            seconds[f"evaluate {v}"] = evaluate(folder, v, log)
            out["variants"][v] = read_result(folder, v)
        except RuntimeError as exc:
            out["variants"][v] = {"error": str(exc)}
        print(f"[{time.strftime('%H:%M:%S')}] {name} {v}: {out['variants'][v]}", flush=True)
    return {**out, "seconds": seconds}


def evaluate(folder: Path, v: str, log: Path) -> float:
    return sh(["skinlesion", "evaluate", v, "--model", f"models/{v}", "--table", "data/interim/metadata.parquet",
               "--shards", "data/processed/shards", "--out", f"results/variants/{v}", "--external", "data/external",
               "--bundle", f"bundles/{v}"], folder, log)


def run_tta(args, best: str, work: Path) -> dict:
    """The best arm's trained models, evaluated again with evaluate.tta: flips (in work/<best>+tta)."""
    source, folder = work / best, work / f"{best}+tta"
    write_params(folder, params_for(args, ARMS[best], tta="flips"))
    for name in ("data/raw", "data/processed", "data/external", "models"):
        link(folder, source / name, name)
    link(folder, source / "data" / "interim", "data/interim")
    log = folder / "run.log"
    out = {"arm": f"{best}+tta", "images": ARMS[best], "tta": "flips", "variants": {}, "seconds": {}}
    for v in args.variants:
        try:
            out["seconds"][f"evaluate {v}"] = evaluate(folder, v, log)
            out["variants"][v] = read_result(folder, v)
        except RuntimeError as exc:
            out["variants"][v] = {"error": str(exc)}
        print(f"[{time.strftime('%H:%M:%S')}] {best}+tta {v}: {out['variants'][v]}", flush=True)
    return out


SPLITS = {"val": "val", "test": "test", "ext": f"external:{EXTERNAL}"}


def reference(arm: str, variant: str) -> tuple[str, str] | None:
    """What a row is compared with, paired: the same variant in the baseline arm; the colour-jittered variant
    against the same variant without colour jitter; a baseline row with nothing."""
    if variant == AUGMENT_PAIR[1]:
        return "baseline", AUGMENT_PAIR[0]
    return None if arm == "baseline" else ("baseline", variant)


def paired(work: Path, rows: list[dict], n_boot: int = 1000, seed: int = 42) -> None:
    """Each row's ROC AUC minus its reference's, on the same images (val, test, external), with a paired group
    bootstrap 95% interval (the same resampled patients / lesions for both): far tighter than comparing two
    separate intervals, since both models meet the same hard and easy cases. Added as `paired_vs` in rows."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    def read(arm, v):
        f = work / arm / "results" / "variants" / v / "predictions.csv"
        return pd.read_csv(f, usecols=["isic_id", "group", "split", "label", "p_malignant"]) if f.is_file() else None

    rng_seed = np.random.SeedSequence(seed)
    for row in rows:
        for v, r in row.get("variants", {}).items():
            ref = reference(row["arm"], v)
            if ref is None or "error" in r:
                continue
            a, b = read(row["arm"], v), read(*ref)
            if a is None or b is None:
                continue
            out = {"reference": f"{ref[1]} in {ref[0]}"}
            for key, split in SPLITS.items():
                m = a[a["split"] == split].merge(b[b["split"] == split], on=["isic_id", "group", "label"],
                                                 suffixes=("", "_ref"))
                y, p, q = m["label"].to_numpy(), m["p_malignant"].to_numpy(), m["p_malignant_ref"].to_numpy()
                codes, groups = pd.factorize(m["group"])
                members = [np.flatnonzero(codes == g) for g in range(len(groups))]
                rng = np.random.default_rng(rng_seed.spawn(1)[0])
                deltas = []
                for _ in range(n_boot):
                    idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
                    if len(np.unique(y[idx])) == 2:
                        deltas.append(roc_auc_score(y[idx], p[idx]) - roc_auc_score(y[idx], q[idx]))
                lo, hi = np.percentile(deltas, [2.5, 97.5])
                out[key] = {"delta": round(roc_auc_score(y, p) - roc_auc_score(y, q), 4), "low": round(float(lo), 4),
                            "high": round(float(hi), 4), "n": int(len(m))}
            r["paired_vs"] = out


def fmt_delta(d) -> str:
    return f"{d['delta']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})" if d else "n/a"


def paired_markdown(rows: list[dict]) -> str:
    lines = ["| arm | variant | compared with | val ROC AUC difference (paired 95% CI) | test ROC AUC difference | "
             f"{EXTERNAL} ROC AUC difference |", "|" + "---|" * 6]
    for row in rows:
        for v, r in row.get("variants", {}).items():
            d = r.get("paired_vs")
            if d:
                lines.append(f"| {row['arm']} | {v} | {d['reference']} | {fmt_delta(d['val'])} | "
                             f"{fmt_delta(d['test'])} | {fmt_delta(d['ext'])} |")
    return "\n".join(lines)


def fmt(m) -> str:
    if not m:
        return "n/a"
    if m.get("low") is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"


def markdown(rows: list[dict]) -> str:
    head = ("| arm | images options | variant | val ROC AUC (95% CI) | HAM10000 test ROC AUC (95% CI) | "
            f"{EXTERNAL} ROC AUC (95% CI) | {EXTERNAL} sensitivity at the validation threshold | "
            f"{EXTERNAL} specificity at the validation threshold |")
    lines = [head, "|" + "---|" * 8]
    for row in rows:
        opts = ", ".join(f"{k}: {v}" for k, v in row["images"].items()) or "defaults (squash, none)"
        if row.get("tta"):
            opts += "; evaluate.tta: flips"
        if "error" in row:
            lines.append(f"| {row['arm']} | {opts} | (all) | FAILED: {row['error']} | | | | |")
            continue
        for v, r in row["variants"].items():
            if "error" in r:
                lines.append(f"| {row['arm']} | {opts} | {v} | FAILED: {r['error']} | | | | |")
                continue
            lines.append(f"| {row['arm']} | {opts} | {v} | {fmt(r['val_roc_auc'])} | {fmt(r['test_roc_auc'])} | "
                         f"{fmt(r['ext_roc_auc'])} | {fmt(r['ext_sensitivity'])} | {fmt(r['ext_specificity'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/robust", help="scratch folder (one subfolder per arm)")
    ap.add_argument("--ham", default=str(REPO.parent / "shared" / "data" / "ham10000"))
    ap.add_argument("--external", default=str(REPO.parent / "shared" / "data" / "isic2017-val"))
    ap.add_argument("--variants", nargs="+", default=["mobilenet_frozen", "dual_mobilenet_frozen"])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--no-tta", action="store_true", help="skip the TTA evaluation of the best arm")
    ap.add_argument("--no-augment", action="store_true", help="skip the colour augmentation pair (baseline arm)")
    ap.add_argument("--json", default=None, help="write every arm's numbers and timings here")
    ap.add_argument("--tabulate-only", metavar="JSON", default=None,
                    help="run nothing: read the rows of an earlier --json, add the paired differences from the "
                         "predictions in --work, print the tables (and write --json)")
    args = ap.parse_args()
    work = Path(args.work)
    if args.tabulate_only:
        rows = json.loads(Path(args.tabulate_only).read_text())["arms"]
        finish(args, work, rows)
        return
    common = work / "common"
    write_params(common, params_for(args, {}))
    if not (common / "data" / "interim" / "metadata.parquet").exists():
        log = common / "run.log"
        sh(["skinlesion", "fetch", "--out", "data/raw"], common, log)
        sh(["skinlesion", "metadata", "--raw", "data/raw", "--out", "data/interim/metadata.parquet"], common, log)
    rows = []

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps({"template": str(TEMPLATE.relative_to(REPO)),
                                                   "variants": args.variants, "arms": rows}, indent=1) + "\n")

    for name in args.arms:
        rows.append(run_arm(args, name, ARMS[name], common, work))
        save()
    first = args.variants[0]
    scored = [(r["variants"][first]["val_roc_auc"]["value"], r["arm"]) for r in rows
              if "error" not in r and "error" not in r["variants"].get(first, {"error": 1})]
    if scored and not args.no_tta:
        best = max(scored)[1]
        print(f"best arm by validation ROC AUC of {first}: {best}", flush=True)
        rows.append(run_tta(args, best, work))
        save()
    finish(args, work, rows)


def finish(args, work: Path, rows: list[dict]) -> None:
    paired(work, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"template": str(TEMPLATE.relative_to(REPO)),
                                               "variants": args.variants, "arms": rows}, indent=1) + "\n")
    print(markdown(rows))
    print()
    print(paired_markdown(rows))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
