#!/usr/bin/env python3
"""The experiments as a table that fits a screen: `make exp-show`.

`dvc exp show` gives every metric of every variant and every param a column, each headed by its file
path (thousands of characters wide for the default params.yaml). This prints the same data turned
around: a row per variant with its headline metric (test ROC AUC on the natural split by default), a
column per experiment (the workspace, the commit, each `dvc exp run`), then the params whose values
differ between those columns. Read from `dvc exp show --json` (run here, or a file with --json).

    python workflow/scripts/exp-table.py                  # the workspace, HEAD and its experiments
    python workflow/scripts/exp-table.py --metric test_natural.average_precision --last 4
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

METRICS_FILE = re.compile(r"^results/variants/([^/]+)/metrics\.json$")
PARAMS_FILE = "params.yaml"
WIDTH = 13  # characters per experiment column (12 shown: "sensitivity" whole)


def columns(shown: list) -> list[tuple[str, dict]]:
    """(label, data) for every row `dvc exp show --json` lists: the workspace, each commit and its
    experiments (named), in that order."""
    out = []
    for entry in shown if isinstance(shown, list) else []:
        if not isinstance(entry, dict):
            continue
        rev = str(entry.get("rev") or "?")
        label = entry.get("name") or (rev[:7] if re.fullmatch(r"[0-9a-f]{40}", rev) else rev)
        out.append((label, entry.get("data") or {}))
        for exp in entry.get("experiments") or []:
            for rev in (exp.get("revs") or [exp]) if isinstance(exp, dict) else []:
                if isinstance(rev, dict) and rev.get("data"):
                    out.append((rev.get("name") or exp.get("name") or str(rev.get("rev"))[:7], rev["data"]))
    return out


def _get(tree, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _flatten(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) < WIDTH else text[:WIDTH - 2] + "…"


def _first(metrics: dict | None, names: list[str]):
    """The value of the first of `names` that the metrics file has (a binary variant's roc_auc, a
    five-class variant's malignant_vs_benign.roc_auc)."""
    for name in names:
        value = _get(metrics, name)
        if value is not None:
            return value
    return None


def table(shown: list, names: list[str], last: int) -> list[str]:
    cols = columns(shown)
    hidden = max(0, len(cols) - last)
    cols = cols[:1] + cols[1:][-(last - 1):] if hidden else cols  # the workspace, then the newest
    variants = list(dict.fromkeys(m.group(1) for _, data in cols for path in (data.get("metrics") or {})
                                  if (m := METRICS_FILE.match(path))))  # dvc.yaml's order, params.yaml's
    params = [_flatten(((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}) for _, data in cols]
    changed = sorted(k for k in set().union(*params) if len({json.dumps(p.get(k)) for p in params}) > 1)
    metric = names[0]
    name_width = max([len(metric) + 2] + [len(v) for v in variants] + [len(k) for k in changed]) + 2

    def row(name: str, cells: list[str]) -> str:
        return name.ljust(name_width) + "".join(c.rjust(WIDTH) for c in cells)

    lines = [row(metric, [label[:WIDTH - 1] for label, _ in cols])]
    for variant in variants:
        path = f"results/variants/{variant}/metrics.json"
        lines.append(row(variant, [_cell(_first(((data.get("metrics") or {}).get(path) or {}).get("data"), names))
                                   for _, data in cols]))
    if len(names) > 1:
        lines.append(f"(where a variant has no {metric}: {', '.join(names[1:])})")
    lines.append("")
    if changed:
        lines.append("params that differ:")
        lines.extend(row(key, [_cell(p.get(key)) for p in params]) for key in changed)
    else:
        lines.append("params: the same in every column")
    if hidden:
        lines.append(f"({hidden} older experiment(s) not shown: --last {len(cols) + hidden})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", action="append", help="the metric of each variant's metrics.json, dotted; "
                        "given again, the next one to look for (default: test_natural.roc_auc, then "
                        "test_natural.malignant_vs_benign.roc_auc for the five-class variants)")
    parser.add_argument("--last", type=int, default=12, help="experiment columns at most, the workspace "
                        "included (default: %(default)s)")
    parser.add_argument("--json", dest="json_file", help="read this `dvc exp show --json` output instead")
    args = parser.parse_args(argv)
    if args.last < 2:
        parser.error("--last must be at least 2")
    try:
        if args.json_file:
            with open(args.json_file, encoding="utf-8") as f:
                text = f.read(50_000_000)
        else:
            proc = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                print(f"exp-table: dvc exp show failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
                return 1
            text = proc.stdout
        shown = json.loads(text)
    except (OSError, ValueError, subprocess.TimeoutExpired) as err:
        print(f"exp-table: cannot read the experiments: {err}", file=sys.stderr)
        return 1
    names = args.metric or ["test_natural.roc_auc", "test_natural.malignant_vs_benign.roc_auc"]
    print("\n".join(table(shown, names, args.last)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
