#!/usr/bin/env python3
"""Local recalibration measured on a set that no decision was made on (issue 20 item 5; docs/recalibration.md).

HAM10000 carries its own `dataset` column: four sources (vidir_molemax, vidir_modern, rosendahl, vienna_dias),
different clinics, cameras and case mixes. This script holds one source out entirely:

1. Writes two HAM10000-layout folders under --work: `sources/train` (the other three sources) and
   `sources/<held-out>` (that source alone), from ../shared/data/ham10000. Images are copied, not linked: the
   local source does not follow links.
2. Runs the pipeline's own stage commands (fetch, metadata, images, external, train, evaluate) on
   `sources/train` with experiments/ham10000/params.yaml's settings (same seed, split, training settings) for
   one variant. Every choice (early stopping, the threshold) is made on the training sources' validation
   split. The held-out source and isic2017-val are scored by evaluate as external sets: ROC AUC with its
   interval, and the validation threshold carried over (`threshold_transfer`). The external stage also checks
   the held-out folder against the internal splits (ids, lesions, image content).
3. Recalibrates the evaluated bundle on the held-out source (`skinlesion recalibrate`, --target sensitivity,
   5-fold CV, 1,000 bootstrap replicates): the threshold refit that docs/recalibration.md reports.

Everything measured goes to --json (benchmarks/recalibration.json by default); doc-figures.py reads it for
docs/recalibration.md. About 15 min on 2 cores for dual_mobilenet_frozen.

    python benchmarks/recalibration.py --work /tmp/recal-bench
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_command import StageFailed, sh  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "experiments" / "ham10000" / "params.yaml"
HAM = REPO.parent / "shared" / "data" / "ham10000"
ISIC2017 = REPO.parent / "shared" / "data" / "isic2017-val"
HAM_CSV = "HAM10000_metadata.csv"


def split_sources(ham: Path, held_out: str, work: Path) -> dict:
    """sources/train (every other source) and sources/<held_out>, each a HAM10000-layout folder."""
    table = pd.read_csv(ham / HAM_CSV)
    if "dataset" not in table.columns:
        sys.exit(f"{ham / HAM_CSV} has no `dataset` column: the Dataverse release's metadata is needed")
    sources = sorted(table["dataset"].dropna().unique())
    if held_out not in sources:
        sys.exit(f"--held-out {held_out!r} is not a source of {ham / HAM_CSV}: choose one of {sources}")
    images = {p.stem: p for p in (ham / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    counts = {}
    for name, part in (("train", table[table["dataset"] != held_out]), (held_out, table[table["dataset"] == held_out])):
        folder = work / "sources" / name
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "images").mkdir(parents=True)
        missing = sorted(set(part["image_id"]) - set(images))
        if missing:
            sys.exit(f"{len(missing)} images of {HAM_CSV} are not in {ham / 'images'}, e.g. {missing[:3]}")
        for image_id in part["image_id"]:
            shutil.copyfile(images[image_id], folder / "images" / images[image_id].name)
        part.to_csv(folder / HAM_CSV, index=False)
        counts[name] = {"images": len(part), "lesions": int(part["lesion_id"].nunique()),
                        "by_source": {k: int(v) for k, v in part["dataset"].value_counts().sort_index().items()}}
    return counts


def params_for(variant: str, train_folder: Path, held_out: str, held_folder: Path, external: Path) -> dict:
    p = yaml.safe_load(TEMPLATE.read_text())
    if variant not in p["variants"]:
        sys.exit(f"--variant {variant!r} is not a variant of {TEMPLATE}: choose one of {sorted(p['variants'])}")
    p["data"]["local"]["path"] = str(train_folder.resolve())
    p["train"]["weights"]["mobilenet_v2"] = str(REPO / "weights" / "mobilenet_v2_1.0_224_no_top_imagenet.h5")
    p["evaluate"]["external"] = [
        {"name": f"ham10000-{held_out}", "path": str(held_folder.resolve()), "layout": "ham10000"},
        {"name": "isic2017-val", "path": str(external.resolve()), "layout": "isic-cli"}]
    p["variants"] = {variant: copy.deepcopy(p["variants"][variant])}
    return p


def interval(block: dict, key: str) -> dict | None:
    if not block or block.get(key) is None:
        return None
    ci = block.get(f"{key}_ci95") or {}
    return {"value": block[key], "low": ci.get("low"), "high": ci.get("high")}


def scored(block: dict) -> dict:
    """ROC AUC, and sensitivity / specificity at the validation threshold, of one evaluation block."""
    at = (block.get("threshold_transfer") or {}).get("at_internal_threshold") or block
    return {"n": block.get("n"), "n_malignant": block.get("n_malignant"), "roc_auc": interval(block, "roc_auc"),
            "sensitivity": interval(at, "sensitivity"), "specificity": interval(at, "specificity")}


def _rate(block: dict, key: str) -> str:
    ci = block.get(f"{key}_ci95")
    value = block.get(key)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({ci['low']:.3f}-{ci['high']:.3f})" if ci else "")


def markdown(result: dict) -> str:
    """The three operating points on the held-out source (docs/recalibration.md's table)."""
    r = result["recalibration"]
    boot, cv = r["bootstrap"], r["cross_validation"]
    ci = boot.get("threshold_ci95")
    refit = f"{r['threshold']:.3f}" + (f" (bootstrap {ci['low']:.3f}-{ci['high']:.3f})" if ci else "")
    rows = [("transferred from the training sources' validation", f"{r['previous_decision']['threshold']:.3f}",
             cv["original_decision"]),
            ("recalibrated, in-sample (optimistic)", refit, boot["in_sample"]),
            (f"recalibrated, {cv['k']}-fold CV (report this)", "per fold", cv["pooled_out_of_fold"])]
    lines = [f"| decision on {result['held_out']} | threshold | sensitivity (95% CI) | specificity (95% CI) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {t} | {_rate(b, 'sensitivity')} | {_rate(b, 'specificity')} |" for name, t, b in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path, help="scratch folder (several GB are not needed: ~0.3 GB)")
    ap.add_argument("--ham", type=Path, default=HAM, help=f"HAM10000 folder with a `dataset` column (default {HAM})")
    ap.add_argument("--external", type=Path, default=ISIC2017, help="isic-cli folder scored as a second external set")
    ap.add_argument("--held-out", default="rosendahl", help="the source kept out of training (default rosendahl)")
    ap.add_argument("--variant", default="dual_mobilenet_frozen", help="a variant of experiments/ham10000/params.yaml")
    ap.add_argument("--target", type=float, default=0.8, help="target sensitivity of the refit (default 0.8)")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "recalibration.json")
    args = ap.parse_args()

    work, v, held = args.work.resolve(), args.variant, args.held_out
    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    log = run / "run.log"
    counts = split_sources(args.ham, held, work)
    held_folder = work / "sources" / held
    params = params_for(v, work / "sources" / "train", held, held_folder, args.external)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    seconds = {}
    table, summary = "data/interim/metadata.parquet", "data/interim/metadata_summary.json"
    seconds["fetch"] = sh(["skinlesion", "fetch", "--out", "data/raw"], run, log, progress=True)
    seconds["metadata"] = sh(["skinlesion", "metadata", "--raw", "data/raw", "--out", table], run, log, progress=True)
    seconds["images"] = sh(["skinlesion", "images", "--table", table, "--raw", "data/raw",
                            "--out", "data/processed/shards"], run, log, progress=True)
    seconds["external"] = sh(["skinlesion", "external", "--metadata-summary", summary, "--out", "data/external"],
                             run, log, progress=True)
    seconds["train"] = sh(["skinlesion", "train", v, "--table", table, "--shards", "data/processed/shards",
                           "--metadata-summary", summary, "--out", f"models/{v}"], run, log, progress=True)
    seconds["evaluate"] = sh(["skinlesion", "evaluate", v, "--model", f"models/{v}", "--table", table,
                              "--shards", "data/processed/shards", "--out", f"results/variants/{v}",
                              "--external", "data/external", "--bundle", f"bundles/{v}"], run, log, progress=True)
    recal_cmd = ["skinlesion", "recalibrate", f"bundles/{v}", str(held_folder), "--layout", "ham10000",
                 "--target-sensitivity", str(args.target), "--cv", str(args.cv), "--bootstrap", str(args.bootstrap),
                 "--seed", "0", "-o", f"bundles/{v}_{held}", "--report", "recalibration.json"]
    seconds["recalibrate"] = sh(recal_cmd, run, log, progress=True)

    evaluation = json.loads((run / "results" / "variants" / v / "evaluation.json").read_text())
    report = json.loads((run / "recalibration.json").read_text())
    external = evaluation.get("external") or {}
    out = {
        "what": f"{v} trained on HAM10000 without {held}, recalibrated on {held} (issue 20 item 5)",
        "command": " ".join(["python", "benchmarks/recalibration.py", *sys.argv[1:]]),
        "recalibrate_command": " ".join(recal_cmd),
        "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
        "platform": {"machine": platform.machine(), "processor": platform.processor() or None,
                     "python": platform.python_version()},
        "variant": v, "held_out": held, "sources": counts,
        "chosen_on": "validation split of the training sources (early stopping, threshold rule "
                     f"{evaluation['test_natural'].get('threshold_rule', params['evaluate']['threshold'])})",
        "threshold": evaluation["test_natural"].get("threshold"),
        "val": scored(evaluation["val"]), "test_in_source": scored(evaluation["test_natural"]),
        "external": {name: scored(block) for name, block in external.items()},
        "recalibration": report, "seconds": seconds,
    }
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except StageFailed as exc:
        sys.exit(str(exc))
