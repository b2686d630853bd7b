"""Validation-chosen ensembles of a run's trained variants (issue 11, item 4), measured from its predictions.

    python benchmarks/ensembles.py PROJECT [--variants V ...] [--json FILE] [--bootstrap 1000]
                                           [--pair VARIANT REFERENCE ...]

PROJECT is a finished run's folder: results/variants/<variant>/predictions.csv holds val, test and
external:<name> rows with p_malignant (what the evaluate stage writes). No training, no new images: every
score is one a variant already gave. Candidates are the binary variants found (or --variants). Compared:

- best single: the candidate with the highest validation ROC AUC (what one ships without ensembling);
- mean of all: the plain mean of every candidate's probability (nothing chosen);
- forward selection (Caruana et al., ICML 2004): start empty and repeatedly add, with replacement, the
  candidate whose addition most raises the validation ROC AUC of the mean probability; stop when no
  addition raises it (at most 20 steps). The members and their counts are the weights;
- stacking: a logistic regression on every candidate's logit, fitted on validation (its validation
  ROC AUC is the out-of-fold one of a 5-fold split by group, so it is not scored on what it was fitted on);
  it can weigh the metadata-only models, which transfer better, against the image models.

--pair A B (repeatable) also gives A's ROC AUC minus B's on every split, with a paired interval: one
variant against the one it modifies (e.g. pool_from against the same variant without). Pairs carry ROC AUC
and that difference only: no threshold is chosen for them, so no sensitivity or specificity.

Only the validation split chooses, so the val column is optimistic for best single and forward selection
(scored on the split that chose them); stacking's val figure is out-of-fold. Test and every external set
are scored once, with group-bootstrap 95% intervals (patients / lesions resampled whole, metrics.bootstrap), and the ROC AUC difference to the best
single with a paired interval (the same resampled groups for both). Sensitivity and specificity are taken
at the Youden threshold chosen on validation and transferred unchanged, as the evaluate stage does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from skinlesion import metrics

MAX_STEPS = 20


def load(project: Path, names: list[str] | None) -> pd.DataFrame:
    """One row per (split, isic_id) with each candidate's p_malignant as a column."""
    folders = sorted((project / "results" / "variants").iterdir())
    missing = sorted(set(names or ()) - {f.name for f in folders if (f / "predictions.csv").is_file()})
    if missing:
        sys.exit(f"no results/variants/<name>/predictions.csv under {project} for: {', '.join(missing)}")
    tables, multiclass = {}, []
    for folder in folders:
        path = folder / "predictions.csv"
        if (names and folder.name not in names) or not path.is_file():
            continue
        table = pd.read_csv(path)
        if "p_malignant" not in table:  # multiclass variants are not candidates of a binary ensemble
            multiclass.append(folder.name)
            continue
        table = table.set_index(["split", "isic_id"])
        if not table.index.is_unique:
            sys.exit(f"{path} has more than one row for some (split, isic_id)")
        tables[folder.name] = table
    if names and multiclass:
        sys.exit(f"not binary (no p_malignant in predictions.csv), so not candidates: {', '.join(multiclass)}")
    if len(tables) < 2:
        sys.exit(f"fewer than two binary variants with predictions.csv under {project}/results/variants")
    joined = pd.concat({name: t["p_malignant"] for name, t in tables.items()}, axis=1, join="inner")
    first = next(iter(tables.values())).loc[joined.index]
    if any(len(table) != len(joined) for table in tables.values()):
        counts = ", ".join(f"{name} {len(table)}" for name, table in tables.items())
        print(f"ensembles: rows per variant: {counts}; only the {len(joined)} (split, isic_id) scored by every "
              "variant are compared", file=sys.stderr)
    for name, table in tables.items():  # the same cases, labelled and grouped alike, or nothing is compared
        same = table.loc[joined.index, ["label", "group"]].astype(str).eq(first[["label", "group"]].astype(str))
        if not same.all().all():
            sys.exit(f"{name}'s predictions.csv labels or groups some cases differently from the others")
    return pd.concat([first[["group", "label"]], joined], axis=1).reset_index()


def auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(metrics.rank_stats(y, p)(np.ones((1, len(y))))["roc_auc"][0])


def forward_selection(y: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, int]:
    counts: dict[str, int] = {}
    total, best = np.zeros(len(y)), -np.inf
    for _ in range(MAX_STEPS):
        n = sum(counts.values())
        trial = {name: auc(y, (total + p) / (n + 1)) for name, p in scores.items()}
        name = max(trial, key=lambda k: (trial[k], -list(scores).index(k)))  # ties: the first listed
        if trial[name] <= best:
            break
        best, total = trial[name], total + scores[name]
        counts[name] = counts.get(name, 0) + 1
    return counts


def mean_of(frame: pd.DataFrame, weights: dict[str, int]) -> np.ndarray:
    return sum(frame[k].to_numpy() * w for k, w in weights.items()) / sum(weights.values())


def logits(frame: pd.DataFrame, candidates: list[str]) -> np.ndarray:
    p = np.clip(frame[candidates].to_numpy(dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def stacked(val: pd.DataFrame, candidates: list[str], seed: int):
    """(fitted model, out-of-fold validation probabilities) of the logistic regression on the logits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    x, y = logits(val, candidates), val["label"].to_numpy()
    oof = np.zeros(len(y))
    for fit, held in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, val["group"]):
        oof[held] = LogisticRegression(max_iter=1000).fit(x[fit], y[fit]).predict_proba(x[held])[:, 1]
    return LogisticRegression(max_iter=1000).fit(x, y), oof


def scored(frame: pd.DataFrame, p: np.ndarray, reference: np.ndarray | None, threshold: float | None,
           n_boot: int, seed: int) -> dict:
    """ROC AUC with its interval; sensitivity / specificity at `threshold` (none without one); with a
    `reference`, p's ROC AUC minus the reference's, with a paired interval."""
    y, codes = frame["label"].to_numpy(), metrics.group_codes(frame["group"].to_numpy(), len(frame))
    mine = metrics.rank_stats(y, p)
    out = {"n": len(y), "malignant": int(y.sum()), "roc_auc": auc(y, p)}
    intervals, _ = metrics.bootstrap(mine, codes, n_boot, seed)
    out["roc_auc_ci95"] = intervals.get("roc_auc")
    if threshold is not None:
        out["sensitivity"] = float((p[y == 1] >= threshold).mean()) if (y == 1).any() else None
        out["specificity"] = float((p[y == 0] < threshold).mean()) if (y == 0).any() else None
    if reference is not None:
        ref = metrics.rank_stats(y, reference)
        delta, _ = metrics.bootstrap(lambda w: {"d": mine(w)["roc_auc"] - ref(w)["roc_auc"]}, codes, n_boot, seed)
        out["delta_vs_best_single"] = out["roc_auc"] - auc(y, reference)
        out["delta_ci95"] = delta.get("d")
    return out


def run(project: Path, names: list[str] | None, n_boot: int, seed: int) -> dict:
    joined = load(project, names)
    candidates = [c for c in joined.columns if c not in ("split", "isic_id", "group", "label")]
    parts = {split: joined[joined["split"] == split].reset_index(drop=True) for split in joined["split"].unique()}
    val = parts["val"]
    y_val = val["label"].to_numpy()
    single = {c: auc(y_val, val[c].to_numpy()) for c in candidates}
    best = max(single, key=single.get)
    ensembles = {
        f"best single ({best})": {best: 1},
        "mean of all": {c: 1 for c in candidates},
        "forward selection": forward_selection(y_val, {c: val[c].to_numpy() for c in candidates}),
    }
    results = {"project": str(project), "candidates": single, "ensembles": {},
               "singles": {c: {s: auc(f["label"].to_numpy(), f[c].to_numpy()) for s, f in parts.items()}
                           for c in candidates}}
    model, oof = stacked(val, candidates, seed)
    coefficients = {c: round(float(w), 3) for c, w in zip(candidates, model.coef_[0])}

    def probabilities(name: str, frame: pd.DataFrame, split: str) -> np.ndarray:
        if name != "stacking":
            return mean_of(frame, ensembles[name])
        return oof if split == "val" else model.predict_proba(logits(frame, candidates))[:, 1]

    for name in [*ensembles, "stacking"]:
        threshold = metrics.choose_threshold(y_val, probabilities(name, val, "val"), "youden")
        row = {"weights": coefficients if name == "stacking" else ensembles[name], "threshold": threshold}
        for split, frame in parts.items():
            reference = None if name.startswith("best single") else frame[best].to_numpy()
            row[split] = scored(frame, probabilities(name, frame, split), reference, threshold, n_boot, seed)
        results["ensembles"][name] = row
    return results


def pairs(project: Path, wanted: list[tuple[str, str]], n_boot: int, seed: int) -> dict:
    """{"A vs B": {split: A's ROC AUC, and A's minus B's with a paired interval}} on the same rows."""
    joined = load(project, sorted({v for pair in wanted for v in pair}))
    out = {}
    for a, b in wanted:
        out[f"{a} vs {b}"] = {}
        for split, frame in joined.groupby("split", sort=False):
            r = scored(frame, frame[a].to_numpy(), frame[b].to_numpy(), None, n_boot, seed)
            # B is the pair's own reference, not the best single: a neutral key
            out[f"{a} vs {b}"][split] = {**{k: r[k] for k in ("n", "malignant", "roc_auc", "roc_auc_ci95")},
                                         "delta": r["delta_vs_best_single"], "delta_ci95": r["delta_ci95"]}
    return out


def pairs_markdown(found: dict) -> str:
    splits = sorted(next(iter(found.values())), key=lambda s: (s != "val", s != "test", s))
    lines = ["| variant vs reference | " + " | ".join(f"{s}: ROC AUC, difference (95% CI)" for s in splits) + " |",
             "|---|" + "---|" * len(splits)]
    for name, by_split in found.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{r['roc_auc']:.3f}, {r['delta']:+.3f} ({r['delta_ci95'][0]:+.3f} to "
            f"{r['delta_ci95'][1]:+.3f})" for r in (by_split[s] for s in splits)) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    splits = [s for s in ("val", "test") if s in next(iter(results["ensembles"].values()))]
    splits += sorted(s for s in next(iter(results["ensembles"].values())) if s.startswith("external:"))
    head = "| ensemble | members (weights) | " + " | ".join(f"{s} ROC AUC" for s in splits) + \
        " | " + " | ".join(f"{s} sens / spec" for s in splits[1:]) + " |"
    lines = [head, "|---|---|" + "---|" * (2 * len(splits) - 1)]

    def cell(r):
        text = f"{r['roc_auc']:.3f}"
        if r.get("roc_auc_ci95"):
            text += f" ({r['roc_auc_ci95'][0]:.3f}-{r['roc_auc_ci95'][1]:.3f})"
        if r.get("delta_ci95"):
            text += f"; {r['delta_vs_best_single']:+.3f} ({r['delta_ci95'][0]:+.3f} to {r['delta_ci95'][1]:+.3f})"
        return text

    for name, row in results["ensembles"].items():
        members = ", ".join(f"{k} {w:+.2f}" if isinstance(w, float) else f"{k} x{w}" if w > 1 else k
                            for k, w in row["weights"].items())
        lines.append(f"| {name} | {members} | " + " | ".join(cell(row[s]) for s in splits) + " | "
                     + " | ".join(f"{row[s]['sensitivity']:.3f} / {row[s]['specificity']:.3f}" for s in splits[1:])
                     + " |")
    lines += ["", "Each candidate alone (ROC AUC, no interval):", "", "| candidate | " + " | ".join(splits) + " |",
              "|---|" + "---|" * len(splits)]
    for name, by_split in sorted(results["singles"].items(), key=lambda kv: -kv[1]["val"]):
        lines.append(f"| {name} | " + " | ".join(f"{by_split[s]:.3f}" for s in splits) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a finished run's folder (results/variants/*/predictions.csv)")
    parser.add_argument("--variants", nargs="+", help="candidates (default: every binary variant found)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="group-bootstrap replicates (default 1000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("VARIANT", "REFERENCE"), default=[],
                        help="also VARIANT's ROC AUC minus REFERENCE's, paired (repeatable)")
    args = parser.parse_args(argv)
    results = run(args.project, args.variants, args.bootstrap, args.seed)
    if args.pair:
        results["pairs"] = pairs(args.project, [tuple(p) for p in args.pair], args.bootstrap, args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    if args.pair:
        print("\n" + pairs_markdown(results["pairs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
