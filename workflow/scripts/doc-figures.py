#!/usr/bin/env python3
"""Fill the measured figures in the prose of README.md, docs/*.md and benchmarks/*.md from committed files.

A figure in the prose is a marked span, `<!-- fig:NAME -->0.902<!-- /fig -->` (the comments do not render;
a span may also hold a whole table, on lines of its own). NAME is an entry of FIGURES below, or matches
one of the PATTERNS families; either says which committed file the figure is read from and how it is
written. This script rewrites the text of every span from its file. `--check` changes nothing and fails,
naming page, figure and both texts, when a span's text differs from its file, when a span names no known
figure, or when a marker is left open. `--list` prints every figure with its value and its file.
tests/test_results_doc.py runs `--check` over every page. (The results tables of docs/results-*.md are
generated the same way, by results-doc.py and results-external.py.)

A number that no committed file backs is not marked: it is removed from the prose, or the prose says where
it can be measured.

    python workflow/scripts/doc-figures.py [--check] [--list] [PAGE ...]   # default: every page
"""

from __future__ import annotations

import json
import re
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPAN = re.compile(r"<!-- fig:([A-Za-z0-9_.+\-]+) -->(.*?)<!-- /fig -->", re.DOTALL)
OPEN, CLOSE = "<!-- fig:", "<!-- /fig -->"

HAM = "experiments/ham10000/results/variants"
ENS = "benchmarks/ensembles.json"
SCALE = "benchmarks/scale.json"
ROB = "benchmarks/robustness.json"
ISIC_DL = "benchmarks/isic_download.json"
LOOKS = "experiments/ham10000/results/test-looks.yaml"
RECAL = "benchmarks/recalibration.json"
FF = "benchmarks/frozen_features.json"
HAM_FIRST = "git:8105de9:" + HAM  # the experiment's first committed run, the one the robustness baseline arm reran
SCALE_UNPACKED = "git:6da80ab:benchmarks/scale.json"  # 2026-12-05 22:46 UTC, images as files under data/raw
SCALE_FIXED_PACKS = "git:6a78a3b:benchmarks/scale.json"  # 2026-12-06 00:13 UTC, fixed 1,000-image packs


@lru_cache(maxsize=None)
def load(path: str):
    """A committed JSON or YAML file, relative to the repository root; `git:COMMIT:PATH` is the file as that
    commit has it (an earlier measurement kept in history; needs the clone's history, as CI fetches it)."""
    if path.startswith("git:"):
        import subprocess

        _, commit, name = path.split(":", 2)
        proc = subprocess.run(["git", "show", f"{commit}:{name}"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{path}: not in this clone's history ({proc.stderr.strip()}); "
                             "a shallow clone lacks it: git fetch --unshallow")
        text = proc.stdout
    else:
        text = (REPO / path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


@lru_cache(maxsize=None)
def benchmark(name: str):
    """benchmarks/NAME.py as a module (its table writers, over the JSON it wrote); benchmarks/ is no package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ham(variant: str) -> dict:
    return load(f"{HAM}/{variant}/evaluation.json")


def _ff_table() -> str:
    """benchmarks/frozen_features.json as the page's table: each repeat of both arms, medians, the ratio."""
    r = load(FF)
    rows = [("features once (one backbone pass over {n} images + {e} head epochs)", "once"),
            ("plain fit ({e} epochs of the full model, backbone frozen)", "plain")]
    head = "| | " + " | ".join(f"repeat {i + 1}" for i in range(r["repeats"])) + " | median |"
    lines = [head, "|" + "---|" * (r["repeats"] + 2)]
    for label, arm in rows:
        cells = " | ".join(f"{t:.2f} s" for t in r[f"{arm}_seconds"])
        text = label.format(n=f"{r['train'] + r['val']:,}", e=r["epochs"])
        lines.append(f"| {text} | {cells} | {r[f'{arm}_median_s']:.2f} s |")
    lines.append(f"| **ratio plain / once** |{' |' * r['repeats']} **{r['ratio_plain_over_once']:.1f}x** |")
    return "\n" + "\n".join(lines) + "\n"


def _rerun_moves() -> list[tuple[float, str]]:
    """How far each binary variant's test ROC AUC moved between the first committed run (8105de9) and the
    committed one: (absolute change, variant), largest first."""
    moves = []
    for v in ham_variants():
        new = ham(v)["test_natural"].get("roc_auc")
        if new is not None:
            moves.append((abs(new - ham_first(v)["test_natural"]["roc_auc"]), v))
    return sorted(moves, reverse=True)


def ham_first(variant: str) -> dict:
    """A variant's evaluation in the experiment's first committed run (8105de9)."""
    return load(f"{HAM_FIRST}/{variant}/evaluation.json")


def ham_variants() -> list[str]:
    return sorted(p.name for p in (REPO / HAM).iterdir() if (p / "evaluation.json").exists())


# --- how figures are written ----------------------------------------------------------------------------------

def f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}"


def span(values, digits: int = 2, fmt=None, sep: str = "-") -> str:
    """The range of some values, "0.41-0.47" (one value when they agree at that precision)."""
    if fmt is signed:
        fmt, sep = (lambda v: signed(v, digits)), " to "
    fmt = fmt or (lambda v: f(v, digits))
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}{sep}{high}"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def count(n: int) -> str:
    return f"{n:,}"


# --- the figures ------------------------------------------------------------------------------------------------

def best_binary() -> str:
    """The binary variant of the HAM10000 experiment with the highest validation ROC AUC (the README's pick)."""
    binary = [v for v in ham_variants() if ham(v)["task"] == "binary"]
    return max(binary, key=lambda v: ham(v)["val"]["roc_auc"])


def _ci(block: dict, key: str, digits: int = 3) -> str:
    ci = block[f"{key}_ci95"]
    return f"{f(ci['low'], digits)}-{f(ci['high'], digits)}"


def _ext_binary_blocks() -> list[dict]:
    """Every variant's isic2017-val block, binary view (a multiclass variant's malignant-vs-benign block)."""
    out = []
    for v in ham_variants():
        block = ham(v)["external"]["isic2017-val"]
        out.append(block if ham(v)["task"] == "binary" else block["malignant_vs_benign"])
    return out


def _constant(path: str, name: str) -> str:
    """A module-level number in a committed source file, as written there (`NAME = 0.02  # ...`)."""
    match = re.search(rf"^{name} = ([0-9.]+)", (REPO / path).read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise SystemExit(f"{path}: no {name} = <number>")
    return match.group(1)


def _multiclass(weighted: bool) -> list[str]:
    return [v for v in ham_variants() if ham(v)["task"] == "multiclass" and v.endswith("_class_weight") == weighted]


def _ens(name: str) -> dict:
    return load(ENS)["ensembles"][name]


def _ens_gain(name: str, split: str) -> float:
    """The paired difference in ROC AUC to the best single model, as the benchmark recorded it."""
    return _ens(name)[split]["delta_vs_best_single"]


def _ensembles() -> list[str]:
    return [k for k in load(ENS)["ensembles"] if not k.startswith("best single")]


def _pair_gains(split: str) -> list[float]:
    return [p[split]["delta"] for p in load(ENS)["pairs"].values()]


def _finetuned_binary() -> list[str]:
    return [v for v in ham_variants() if ham(v)["task"] == "binary" and "finetune" in v]


def _singles(split: str, metadata: bool) -> list[float]:
    """Each candidate's ROC AUC alone: the metadata-only models (logreg, mlp) or the image models."""
    return [v[split] for k, v in load(ENS)["singles"].items() if (k in ("logreg", "mlp")) == metadata]


def _ensembles_tables() -> str:
    """benchmarks/ensembles.py's own tables (what it prints), from the JSON it wrote."""
    module = benchmark("ensembles")
    results = load(ENS)
    return f"\n{module.markdown(results)}\n\n{module.pairs_markdown(results['pairs'])}\n"


def _ens_counts() -> str:
    best = next(iter(load(ENS)["ensembles"].values()))
    t, e = best["test"], best["external:isic2017-val"]
    return (f"test n = {count(t['n'])} with {count(t['malignant'])} malignant; isic2017-val n = {count(e['n'])} "
            f"with {count(e['malignant'])} melanoma")


def _history_rows(variant: str) -> int:
    """Epochs a variant ran, from its committed training history (one row per epoch)."""
    text = (REPO / HAM / variant / "plots" / "history.csv").read_text(encoding="utf-8")
    return len([line for line in text.splitlines()[1:] if line.strip()])


def _scale(size: str | None = None, source: str = SCALE):
    results = load(source)["results"]
    return results[size] if size else [results[k] for k in sorted(results, key=int)]


def _seconds(x: float) -> str:
    return f"{x:.2f} s" if x < 1 else f"{x:.1f} s"


def _total(r: dict) -> float:
    return sum(s["seconds"] for s in r["stages"].values())


def _dvc_share(r: dict) -> float:
    """DVC's own seconds in a run (hashing, caching, writing dvc.lock), over every stage."""
    return sum(s["dvc_seconds"] for s in r["stages"].values())


def _per_size(source: str, get, fmt) -> str:
    """One figure per size, "0.67 / 2.28 / 10.28", smallest size first."""
    return " / ".join(fmt(get(r)) for r in _scale(source=source))


def _growth_kb(stage: str) -> float:
    small, large = _scale()[0], _scale()[-1]
    return ((large["stages"][stage]["peak_mb"] - small["stages"][stage]["peak_mb"]) * 1000
            / (large["images"] - small["images"]))


def _peaks(stage: str) -> str:
    small, large = _scale()[0], _scale()[-1]
    return f"{small['stages'][stage]['peak_mb']:.0f} -> {large['stages'][stage]['peak_mb']:.0f} MB"


def _gaps() -> tuple[float, float, float]:
    """How far this run and the fixed-packs run differ: fetch at 100k, any other stage, dvc status."""
    now, then = _scale(), _scale(source=SCALE_FIXED_PACKS)
    other = max(abs(a["stages"][s]["seconds"] - b["stages"][s]["seconds"])
                for a, b in zip(now, then) for s in a["stages"] if s != "fetch")
    status = max(abs(a["dvc_status"]["median_s"] - b["dvc_status"]["median_s"]) for a, b in zip(now, then))
    return abs(now[-1]["stages"]["fetch"]["seconds"] - then[-1]["stages"]["fetch"]["seconds"]), other, status


def _scale_report() -> str:
    """benchmarks/scale.py's own tables (its --report), from the JSON it wrote."""
    module = benchmark("scale")
    return module.report(load(SCALE)["results"])


def _recal_auc(*where: str) -> str:
    """ROC AUC with its interval, "0.640 (0.612-0.667)", of a block of benchmarks/recalibration.json."""
    block = load(RECAL)
    for key in where:
        block = block[key]
    r = block["roc_auc"]
    return f"{f(r['value'])} ({f(r['low'])}-{f(r['high'])})"


def _recal_rate(path: tuple, key: str) -> str:
    block = load(RECAL)["recalibration"]
    for part in path:
        block = block[part]
    ci = block[f"{key}_ci95"]
    return f"{f(block[key])} ({f(ci['low'])}-{f(ci['high'])})"


def _dl_ratio(key: str) -> str:
    """isic-cli's median seconds over ours in one cell of the download benchmark: the throughput ratio."""
    runs = load(ISIC_DL)["cells"][key]["runs"]
    median = benchmark("isic_download").median
    return f"{median(runs['isic-cli']) / median(runs['ours']):.2f}x"


def _arm(arm: str) -> dict:
    return next(a for a in load(ROB)["arms"] if a["arm"] == arm)


def _rob(arm: str, variant: str) -> dict:
    return _arm(arm)["variants"][variant]


def _rob_delta(arm: str, variant: str, split: str, part: str = "delta") -> str:
    d = _rob(arm, variant)["paired_vs"][split]
    if part == "ci":
        return f"{signed(d['low'])} to {signed(d['high'])}"
    return signed(d["delta"])


def _rob_reproduces() -> str:
    """The baseline arm's val / test / isic2017-val ROC AUC per variant, to 6 digits; and a failure, not a
    figure, when they are not the experiments/ham10000 results of 8105de9 (the run the benchmark's code
    matched) that the page says they reproduce."""
    out = []
    for v in ("mobilenet_frozen", "dual_mobilenet_frozen", "mobilenet_frozen_aug"):
        r, e = _rob("baseline", v), ham_first(v)
        ours = [r["val_roc_auc"]["value"], r["test_roc_auc"]["value"], r["ext_roc_auc"]["value"]]
        committed = [e["val"]["roc_auc"], e["test_natural"]["roc_auc"], e["external"]["isic2017-val"]["roc_auc"]]
        if ours != committed:
            raise SystemExit(f"{ROB}: baseline {v} {ours} is not {HAM_FIRST}'s {committed}")
        out.append(" / ".join(f"{x:g}" for x in ours))
    return ", ".join(out[:-1]) + ", and " + out[-1]


def _rob_seconds(pick) -> list[float]:
    return [t for a in load(ROB)["arms"] for k, t in a["seconds"].items() if pick(a, k)]


def _rob_tables(which: str) -> str:
    module = benchmark("robustness")
    rows = load(ROB)["arms"]
    return "\n" + (module.markdown(rows) if which == "arms" else module.paired_markdown(rows)) + "\n"


def _ints(values) -> str:
    return span(values, fmt=lambda v: f"{v:,}")


# NAME: (the committed file it comes from, how it is computed and written)
FIGURES: dict[str, tuple[str, callable]] = {
    # experiments/ham10000 (README, benchmarks/)
    "ham10000.best.test_roc_auc": (HAM, lambda: f(ham(best_binary())["test_natural"]["roc_auc"])),
    "ham10000.best.test_roc_auc_ci": (HAM, lambda: _ci(ham(best_binary())["test_natural"], "roc_auc")),
    "ham10000.best.ext_n": (HAM, lambda: count(ham(best_binary())["external"]["isic2017-val"]["n"])),
    "ham10000.best.ext_roc_auc": (HAM, lambda: f(ham(best_binary())["external"]["isic2017-val"]["roc_auc"])),
    "ham10000.best.ext_roc_auc_ci": (HAM, lambda: _ci(ham(best_binary())["external"]["isic2017-val"], "roc_auc")),
    "ham10000.best.ext_sensitivity": (HAM, lambda: pct(ham(best_binary())["external"]["isic2017-val"]["sensitivity"])),
    "ham10000.multiclass.balanced_accuracy": (HAM, lambda: span(
        [ham(v)["test_natural"]["balanced_accuracy"] for v in _multiclass(False)])),
    "ham10000.multiclass_class_weight.balanced_accuracy": (HAM, lambda: span(
        [ham(v)["test_natural"]["balanced_accuracy"] for v in _multiclass(True)])),
    "ham10000.multiclass.melanoma_recall": (HAM, lambda: span(
        [ham(v)["test_natural"]["recall"]["melanoma"] for v in _multiclass(False)])),
    "ham10000.multiclass_class_weight.melanoma_recall": (HAM, lambda: span(
        [ham(v)["test_natural"]["recall"]["melanoma"] for v in _multiclass(True)])),
    "ham10000.best.ext_malignant": (HAM, lambda: count(ham(best_binary())["external"]["isic2017-val"]["n_malignant"])),
    "ham10000.ext_sensitivity_halfwidth": (HAM, lambda: span([
        (b["sensitivity_ci95"]["high"] - b["sensitivity_ci95"]["low"]) / 2 for b in _ext_binary_blocks()])),
    "ham10000.variants": (HAM, lambda: str(len(ham_variants()))),
    "ham10000.rerun.max_move": (HAM, lambda: f"{f(_rerun_moves()[0][0])} ({_rerun_moves()[0][1]})"),
    "ham10000.rerun.best_move": (HAM, lambda: f(dict((v, d) for d, v in _rerun_moves())[best_binary()])),
    "ham10000.rerun.multiclass_finetune_ba": (HAM, lambda: " to ".join(
        f(e["test_natural"]["balanced_accuracy"], 2) for e in (ham_first("multiclass_finetune"),
                                                              ham("multiclass_finetune")))),
    "ham10000.rerun.class_weight_ba_move": (HAM, lambda: f(max(
        abs(ham(v)["test_natural"]["balanced_accuracy"] - ham_first(v)["test_natural"]["balanced_accuracy"])
        for v in ham_variants() if v.startswith("multiclass") and v.endswith("class_weight")))),
    "ham10000.test_looks": (LOOKS, lambda: str(len(load(LOOKS)["looks"]))),
    "ham10000.finetuned.test_roc_auc": (HAM, lambda: span(
        [ham(v)["test_natural"]["roc_auc"] for v in _finetuned_binary()], 3)),
    "ham10000.frozen.epochs": (HAM, lambda: _ints([_history_rows(v) for v in ham_variants()
                                                  if "frozen" in v and "_aug" not in v])),
    # tests/test_baseline.py: the bounds it holds the off-platform reproduction to (constants, read from the test)
    "baseline.tolerance": ("tests/test_baseline.py", lambda: _constant("tests/test_baseline.py", "TOLERANCE")),
    "baseline.rank_tolerance": ("tests/test_baseline.py",
                                lambda: _constant("tests/test_baseline.py", "RANK_TOLERANCE")),
    # params.yaml
    "params.variants": ("params.yaml", lambda: str(len(load("params.yaml")["variants"]))),
    # benchmarks/scale.json (the largest size; ranges over every size)
    "scale.100k.dvc_status": (SCALE, lambda: _seconds(_scale("100000")["dvc_status"]["median_s"])),
    "scale.100k.dvc_commit": (SCALE, lambda: _seconds(_scale("100000")["dvc_commit"]["seconds"])),
    "scale.dvc_status": (SCALE, lambda: span([r["dvc_status"]["median_s"] for r in _scale()]) + " s"),
    "scale.jobs_noop": (SCALE, lambda: _ints([r["snakemake_n"]["jobs"] for r in _scale()])),
    "scale.jobs_after_commit": (SCALE, lambda: _ints([r["snakemake_n_after_commit"]["jobs"] for r in _scale()])),
    "scale.jobs_after_step": (SCALE, lambda: _ints([r["snakemake_n_after_step"]["jobs"] for r in _scale()])),
    "scale.100k.raw_files": (SCALE, lambda: count(_scale("100000")["raw_files"])),
    "scale.100k.dvc_commit_mb": (SCALE, lambda: f"{_scale('100000')['dvc_commit']['peak_mb']:.0f} MB"),
    "scale.100k.dvc_share": (SCALE, lambda: f"{_dvc_share(_scale('100000')):.0f} s"),
    "scale.per_1k": (SCALE, lambda: span([_total(r) / r["images"] * 1000 for r in _scale()[1:]], 1) + " s"),
    "scale.100k.fetch_share": (SCALE, lambda: pct(_scale("100000")["stages"]["fetch"]["seconds"]
                                                  / _total(_scale("100000")))),
    "scale.fetch_per_1k": (SCALE, lambda: span([r["stages"]["fetch"]["seconds"] / r["images"] * 1000
                                                for r in _scale()[1:]], 1) + " s/1k"),
    "scale.images_per_1k": (SCALE, lambda: span([r["stages"]["images"]["command_seconds"] / r["images"] * 1000
                                                 for r in _scale()[1:]]) + " s/1k"),
    "scale.100k.metadata_command": (SCALE, lambda: _seconds(_scale("100000")["stages"]["metadata"]["command_seconds"])),
    "scale.100k.pixels": (SCALE, lambda: f"{_scale('100000')['images'] * 64 * 64 * 3 / 1e9:.1f} GB"),
    "scale.100k.images_peak": (SCALE, lambda: f"{_scale('100000')['stages']['images']['peak_mb']:.0f} MB"),
    "scale.growth_kb": (SCALE, lambda: span([_growth_kb(s) for s in ("metadata", "evaluate@logreg", "train@logreg",
                                                                     "fetch")], 0) + " KB"),
    "scale.peaks.metadata": (SCALE, lambda: _peaks("metadata")),
    "scale.peaks.evaluate": (SCALE, lambda: _peaks("evaluate@logreg")),
    "scale.peaks.train": (SCALE, lambda: _peaks("train@logreg")),
    "scale.peaks.fetch": (SCALE, lambda: _peaks("fetch")),
    "scale.dvc_peaks": (SCALE, lambda: span([r[k]["peak_mb"] for r in _scale() for k in ("dvc_status", "dvc_commit")],
                                            0) + " MB"),
    "scale.tables": (SCALE, lambda: "\n" + _scale_report() + "\n"),
    "isic_download.tables": (ISIC_DL, lambda: "\n" + benchmark("isic_download").report(load(ISIC_DL)["cells"]) + "\n"),
    "isic_download.ratio.300_50": (ISIC_DL, lambda: _dl_ratio("300img-50ms-clean-10w")),
    "isic_download.ratio.3000_50": (ISIC_DL, lambda: _dl_ratio("3000img-50ms-clean-10w")),
    "isic_download.ratio.300_100": (ISIC_DL, lambda: _dl_ratio("300img-100ms-clean-10w")),
    "isic_download.ratio.300_50_faults": (ISIC_DL, lambda: _dl_ratio("300img-50ms-faults-10w")),
    # the same benchmark before the images were packed, and with fixed packs (earlier commits of scale.json)
    "scale.unpacked.dvc_status": (SCALE_UNPACKED, lambda: _per_size(SCALE_UNPACKED,
                                                                    lambda r: r["dvc_status"]["median_s"],
                                                                    lambda x: f"{x:.2f}") + " s"),
    "scale.unpacked.dvc_commit": (SCALE_UNPACKED, lambda: _per_size(SCALE_UNPACKED,
                                                                    lambda r: r["dvc_commit"]["seconds"],
                                                                    lambda x: f"{x:.1f}") + " s"),
    "scale.unpacked.total": (SCALE_UNPACKED, lambda: _per_size(SCALE_UNPACKED, _total, lambda x: f"{x:.1f}") + " s"),
    "scale.unpacked.100k.dvc_status": (SCALE_UNPACKED, lambda: _seconds(
        _scale("100000", SCALE_UNPACKED)["dvc_status"]["median_s"])),
    "scale.unpacked.100k.dvc_commit": (SCALE_UNPACKED, lambda: _seconds(
        _scale("100000", SCALE_UNPACKED)["dvc_commit"]["seconds"])),
    "scale.unpacked.100k.dvc_commit_mb": (
        SCALE_UNPACKED, lambda: f"{_scale('100000', SCALE_UNPACKED)['dvc_commit']['peak_mb']:.0f} MB"),
    "scale.unpacked.100k.dvc_share": (SCALE_UNPACKED,
                                      lambda: f"{_dvc_share(_scale('100000', SCALE_UNPACKED)):.0f} s"),
    "scale.fixed_packs.dvc_status": (SCALE_FIXED_PACKS, lambda: _per_size(
        SCALE_FIXED_PACKS, lambda r: r["dvc_status"]["median_s"], lambda x: f"{x:.2f}") + " s"),
    "scale.fixed_packs.dvc_commit": (SCALE_FIXED_PACKS, lambda: _per_size(
        SCALE_FIXED_PACKS, lambda r: r["dvc_commit"]["seconds"], lambda x: f"{x:.1f}") + " s"),
    "scale.fixed_packs.total": (SCALE_FIXED_PACKS,
                                lambda: _per_size(SCALE_FIXED_PACKS, _total, lambda x: f"{x:.1f}") + " s"),
    "scale.fixed_packs.fetch_gap": (SCALE_FIXED_PACKS, lambda: _seconds(_gaps()[0])),
    "scale.fixed_packs.other_gap": (SCALE_FIXED_PACKS, lambda: _seconds(_gaps()[1])),
    "scale.fixed_packs.status_gap": (SCALE_FIXED_PACKS, lambda: _seconds(_gaps()[2])),
    # benchmarks/robustness.json
    "robustness.tables.arms": (ROB, lambda: _rob_tables("arms")),
    "robustness.tables.paired": (ROB, lambda: _rob_tables("paired")),
    "robustness.reproduces": (ROB, _rob_reproduces),
    "robustness.n_test": (ROB, lambda: count(_rob("baseline", "mobilenet_frozen")["n_test"])),
    "robustness.n_ext": (ROB, lambda: count(_rob("baseline", "mobilenet_frozen")["n_ext"])),
    "robustness.baseline.test": (ROB, lambda: span([_rob("baseline", v)["test_roc_auc"]["value"]
                                                    for v in ("mobilenet_frozen", "dual_mobilenet_frozen")])),
    "robustness.baseline.ext": (ROB, lambda: span([_rob("baseline", v)["ext_roc_auc"]["value"]
                                                   for v in ("mobilenet_frozen", "dual_mobilenet_frozen")])),
    "robustness.seconds.images": (ROB, lambda: span(_rob_seconds(lambda a, k: k == "images"), 0) + " s"),
    "robustness.seconds.train_frozen": (ROB, lambda: span(_rob_seconds(
        lambda a, k: k.startswith("train") and "_aug" not in k), 0) + " s"),
    "robustness.seconds.train_aug": (ROB, lambda: span(_rob_seconds(
        lambda a, k: k.startswith("train") and "_aug" in k), 0) + " s"),
    "robustness.seconds.evaluate": (ROB, lambda: span(_rob_seconds(
        lambda a, k: k.startswith("evaluate") and not a.get("tta")), 0) + " s"),
    "robustness.seconds.evaluate_tta": (ROB, lambda: span(_rob_seconds(
        lambda a, k: k.startswith("evaluate") and a.get("tta")), 0) + " s"),
    "robustness.seconds.evaluate_mobilenet": (
        ROB, lambda: f"{_arm('baseline')['seconds']['evaluate mobilenet_frozen']:.0f} s"),
    "robustness.seconds.evaluate_mobilenet_tta": (
        ROB, lambda: f"{_arm('baseline+tta')['seconds']['evaluate mobilenet_frozen']:.0f} s"),
    # benchmarks/frozen_features.json
    "ff.table": (FF, _ff_table),
    "ff.ratio": (FF, lambda: f"{load(FF)['ratio_plain_over_once']:.1f}x"),
    "ff.setup": (FF, lambda: (f"{load(FF)['data']} ({count(load(FF)['train'])} train, {count(load(FF)['val'])} val) "
                              f"at {load(FF)['size']} px, {load(FF)['epochs']} epochs, {load(FF)['cpus']} CPUs, "
                              f"TensorFlow {load(FF)['tensorflow']}, Keras {load(FF)['keras']}, "
                              f"Python {load(FF)['python']}")),
    # benchmarks/recalibration.json (docs/recalibration.md)
    "recal.table": (RECAL, lambda: "\n" + benchmark("recalibration").markdown(load(RECAL)) + "\n"),
    "recal.variant": (RECAL, lambda: load(RECAL)["variant"]),
    "recal.held_out": (RECAL, lambda: load(RECAL)["held_out"]),
    "recal.train_images": (RECAL, lambda: count(load(RECAL)["sources"]["train"]["images"])),
    "recal.train_sources": (RECAL, lambda: ", ".join(load(RECAL)["sources"]["train"]["by_source"])),
    "recal.held_images": (RECAL, lambda: count(load(RECAL)["recalibration"]["local_set"]["cases"])),
    "recal.held_malignant": (RECAL, lambda: count(load(RECAL)["recalibration"]["local_set"]["malignant"])),
    "recal.val_roc_auc": (RECAL, lambda: _recal_auc("val")),
    "recal.test_roc_auc": (RECAL, lambda: _recal_auc("test_in_source")),
    "recal.held_roc_auc": (RECAL, lambda: _recal_auc("external", f"ham10000-{load(RECAL)['held_out']}")),
    "recal.ext_roc_auc": (RECAL, lambda: _recal_auc("external", "isic2017-val")),
    "recal.transferred.sensitivity": (RECAL, lambda: _recal_rate(("cross_validation", "original_decision"), "sensitivity")),
    "recal.transferred.specificity": (RECAL, lambda: _recal_rate(("cross_validation", "original_decision"), "specificity")),
    "recal.cv.sensitivity": (RECAL, lambda: _recal_rate(("cross_validation", "pooled_out_of_fold"), "sensitivity")),
    "recal.cv.specificity": (RECAL, lambda: _recal_rate(("cross_validation", "pooled_out_of_fold"), "specificity")),
    "recal.minutes": (RECAL, lambda: f"{sum(load(RECAL)['seconds'].values()) / 60:.0f} min"),
    # benchmarks/ensembles.json
    # (ensembles: the paired ROC AUC difference to the best single model; depths: to the same variant without
    # pool_from; as ranges over the ensembles / the two pairs)
    "ensembles.gain.val": (ENS, lambda: span([_ens_gain(k, "val") for k in _ensembles()], 3, signed)),
    "ensembles.gain.test": (ENS, lambda: span([_ens_gain(k, "test") for k in _ensembles()], 3, signed)),
    "ensembles.gain.ext": (ENS, lambda: span([_ens_gain(k, "external:isic2017-val") for k in _ensembles()], 3,
                                             signed)),
    "ensembles.depths.val": (ENS, lambda: span(_pair_gains("val"), 3, signed)),
    "ensembles.depths.test": (ENS, lambda: span(_pair_gains("test"), 3, signed)),
    "ensembles.depths.ext": (ENS, lambda: span(_pair_gains("external:isic2017-val"), 3, signed)),
    "ensembles.depths.ext_ci": (ENS, lambda: " to ".join(signed(x, 2) for x in (
        min(p["external:isic2017-val"]["delta_ci95"][0] for p in load(ENS)["pairs"].values()),
        max(p["external:isic2017-val"]["delta_ci95"][1] for p in load(ENS)["pairs"].values())))),
    "ensembles.best_single": (ENS, lambda: next(k for k in load(ENS)["ensembles"] if k.startswith("best single"))
                              .split("(")[1].rstrip(")")),
    "ensembles.metadata.ext": (ENS, lambda: " / ".join(f(load(ENS)["singles"][k]["external:isic2017-val"])
                                                       for k in ("logreg", "mlp"))),
    "ensembles.metadata.test": (ENS, lambda: " / ".join(f(load(ENS)["singles"][k]["test"]) for k in ("logreg", "mlp"))),
    "ensembles.images.test": (ENS, lambda: span(_singles("test", False))),
    "ensembles.images.ext": (ENS, lambda: span(_singles("external:isic2017-val", False))),
    "ensembles.stacking.metadata_weights": (ENS, lambda: ", ".join(
        f"{k} {signed(_ens('stacking')['weights'][k], 2)}" for k in ("mlp", "logreg"))),
    "ensembles.ext_sensitivity": (ENS, lambda: span(
        [r["external:isic2017-val"]["sensitivity"] for r in load(ENS)["ensembles"].values()])),
    "ensembles.counts": (ENS, _ens_counts),
    "ensembles.val_n": (ENS, lambda: count(next(iter(load(ENS)["ensembles"].values()))["val"]["n"])),
    "ensembles.test_n": (ENS, lambda: count(next(iter(load(ENS)["ensembles"].values()))["test"]["n"])),
    "ensembles.ext_n": (ENS, lambda: count(next(iter(load(ENS)["ensembles"].values()))["external:isic2017-val"]["n"])),
    "ensembles.ext_malignant": (ENS, lambda: count(
        next(iter(load(ENS)["ensembles"].values()))["external:isic2017-val"]["malignant"])),
    "ensembles.tables": (ENS, _ensembles_tables),
}


# Families of figures, by the shape of their name (NAME's parts are picked from the regular expression)
PATTERNS: list[tuple[re.Pattern, str, callable]] = [
    # robustness.d.ARM.VARIANT.SPLIT: the paired ROC AUC difference to the reference; .ci. its interval
    (re.compile(r"robustness\.d\.([a-z_+]+)\.([a-z_]+)\.(val|test|ext)"), ROB,
     lambda m: _rob_delta(m[1], m[2], m[3])),
    (re.compile(r"robustness\.ci\.([a-z_+]+)\.([a-z_]+)\.(val|test|ext)"), ROB,
     lambda m: _rob_delta(m[1], m[2], m[3], "ci")),
    (re.compile(r"robustness\.([a-z_+]+)\.([a-z_]+)\.ext_roc_auc"), ROB,
     lambda m: f"{f(_rob(m[1], m[2])['ext_roc_auc']['value'])} ({f(_rob(m[1], m[2])['ext_roc_auc']['low'])}-"
               f"{f(_rob(m[1], m[2])['ext_roc_auc']['high'])})"),
    (re.compile(r"robustness\.([a-z_+]+)\.([a-z_]+)\.ext_roc_auc_value"), ROB,
     lambda m: f(_rob(m[1], m[2])["ext_roc_auc"]["value"])),
    # robustness.ARM.VARIANT.METRIC: a metric of one arm (threshold 3 digits, test sensitivity / specificity 2)
    (re.compile(r"robustness\.([a-z_+]+)\.([a-z_]+)\.(threshold)"), ROB, lambda m: f(_rob(m[1], m[2])["threshold"])),
    (re.compile(r"robustness\.([a-z_+]+)\.([a-z_]+)\.(test_sens_spec)"), ROB,
     lambda m: f"{f(_rob(m[1], m[2])['test_sensitivity']['value'], 2)} / "
               f"{f(_rob(m[1], m[2])['test_specificity']['value'], 2)}"),
]


def _pattern(name: str):
    for pattern, source, fn in PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return source, (lambda m=match, fn=fn: fn(m))
    return None


# --- pages ------------------------------------------------------------------------------------------------------

def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]


def figure(name: str):
    """(source, compute) of a named figure or of a family's member; None when it names none."""
    return FIGURES.get(name) or _pattern(name)


def value(name: str) -> str:
    return figure(name)[1]()


def render(text: str, where: str) -> tuple[str, list[str]]:
    """The page with every span filled from its file, and the problems found (unknown names, open markers)."""
    problems: list[str] = []
    spans = SPAN.findall(text)
    if not (len(spans) == text.count(OPEN) == text.count(CLOSE)) or any(OPEN in t for _, t in spans):
        problems.append(f"{where}: a figure marker without its pair ({text.count(OPEN)} opened, "
                        f"{text.count(CLOSE)} closed)")

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if figure(name) is None:
            problems.append(f"{where}: no figure named {name!r} in {Path(__file__).name}'s FIGURES")
            return match.group(0)
        return f"<!-- fig:{name} -->{value(name)}<!-- /fig -->"

    return SPAN.sub(fill, text), problems


def main(argv: list[str]) -> int:
    check, listing = "--check" in argv, "--list" in argv
    if listing:
        for pattern, source, _ in PATTERNS:
            print(f"{pattern.pattern}\t(a family: any name matching it)\t{source}")
        for name, (source, _) in FIGURES.items():
            text = value(name)
            text = f"(a table of {text.strip().count(chr(10)) + 1} lines)" if "\n" in text else text
            print(f"{name}\t{text}\t{source}")
        return 0
    targets = [Path(a) for a in argv if not a.startswith("--")] or pages()
    failed = False
    for page in targets:
        text = page.read_text(encoding="utf-8")
        where = str(page.relative_to(REPO) if page.is_absolute() and page.is_relative_to(REPO) else page)
        new, problems = render(text, where)
        for problem in problems:
            print(problem, file=sys.stderr)
        failed |= bool(problems)
        if new == text:
            continue
        if check:
            old_spans, new_spans = SPAN.findall(text), SPAN.findall(new)
            for (name, typed), (_, generated) in zip(old_spans, new_spans):
                if typed != generated:
                    print(f"{where}: figure {name} reads {typed!r}, its file {figure(name)[0]} gives "
                          f"{generated!r}", file=sys.stderr)
            failed = True
        else:
            page.write_text(new, encoding="utf-8")
            print(f"{where}: figures regenerated")
    if failed and check:
        print(f"run: python {Path(sys.argv[0]).as_posix()} (then review the prose around each figure)",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
