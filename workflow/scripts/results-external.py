#!/usr/bin/env python3
"""Write the tables of docs/results-external.md from a run's files, never by hand.

Every variant, internal test split and each external set side by side, and the threshold transfer, from
<run>/results/variants/*/evaluation.json (and <run>/params.yaml for the sets' paths). The page keeps its
prose; the part between `<!-- <block>:begin -->` and `<!-- <block>:end -->` is generated (block `results` by
default). tests/test_external.py checks the generator; `--check` fails when the page and the files differ.

    python workflow/scripts/results-external.py experiments/ham10000 docs/results-external.md [--check]
    python workflow/scripts/results-external.py /tmp/run docs/results-external.md --block smoke
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(block: dict | None, key: str) -> str:
    block = block or {}
    ci = block.get(f"{key}_ci95") or {}
    value = _f(block.get(key))
    return value if not ci else f"{value} ({_f(ci.get('low'))}–{_f(ci.get('high'))})"


def _binary(result: dict, block: dict | None) -> dict | None:
    """The binary view of a block: itself, or a multiclass variant's malignant-vs-benign block."""
    if block is None:
        return None
    return block if result["task"] == "binary" else block.get("malignant_vs_benign")


def _sets(results: dict) -> list[str]:
    names: list[str] = []
    for r in results.values():
        names += [n for n in (r.get("external") or {}) if n not in names]
    return names


def tables(run: Path) -> str:
    folder = run / "results" / "variants"
    dirs = sorted(p for p in folder.iterdir() if (p / "evaluation.json").exists()) if folder.is_dir() else []
    if not dirs:
        return "No evaluated variant in the run's `results/variants` yet: run the experiment, then this script.\n"
    results = {p.name: json.loads((p / "evaluation.json").read_text(encoding="utf-8")) for p in dirs}
    names = _sets(results)
    out = []
    if not names:
        out += ["This run has no external set (`evaluate.external` was empty, or the run predates it): internal "
                "results only.", ""]
    params = run / "params.yaml"
    if names and params.exists():
        from skinlesion.params import read_yaml  # the params files' one reader (refuses a key given twice)

        entries = {e["name"]: e for e in (read_yaml(params) or {}).get("evaluate", {}).get("external") or []}
        out += ["External sets (`evaluate.external` in the run's params.yaml):", ""]
        for n in names:
            e = entries.get(n, {})
            block = next((_binary(r, (r.get("external") or {}).get(n)) for r in results.values()
                          if (r.get("external") or {}).get(n)), None) or {}
            out.append(f"- `{n}`: `{e.get('path', '?')}` ({e.get('layout', 'auto')} layout), {block.get('n', '?')} images, "
                       f"{block.get('n_malignant', '?')} malignant, {block.get('n_groups', '?')} groups")
        out.append("")
    out += ["ROC AUC with 95% group-bootstrap intervals (multiclass variants: malignant vs benign, score "
            "1 − P(benign)). Test: the internal lesion-grouped test split.", "",
            "| variant | task | test ROC AUC | " + " | ".join(f"{n} ROC AUC" for n in names)
            + (" | " if names else "") + "test PPV @ 50% | test NPV @ 50% | "
            + " | ".join(f"{n} PPV @ 50% | {n} NPV @ 50%" for n in names) + (" |" if names else ""),
            "|---|---|---|" + "---|" * len(names) + "---|---|" + "---|---|" * len(names)]
    for name, r in results.items():
        t = _binary(r, r["test_natural"])
        ext = [_binary(r, (r.get("external") or {}).get(n)) for n in names]
        cells = [name, r["task"], _ci(t, "roc_auc")] + [_ci(e, "roc_auc") for e in ext]
        cells += [_ci(t, "ppv_at_50_prevalence"), _ci(t, "npv_at_50_prevalence")]
        for e in ext:
            cells += [_ci(e, "ppv_at_50_prevalence"), _ci(e, "npv_at_50_prevalence")]
        out.append("| " + " | ".join(cells) + " |")
    for n in names:
        out += ["", f"Threshold transfer to `{n}`: sensitivity / specificity at the threshold chosen on internal "
                "validation (as the model would be used), against those at the threshold the same rule picks on "
                f"`{n}` itself (an oracle that needs its labels: optimistic, a reference only).", "",
                "| variant | internal threshold | test sensitivity | test specificity | "
                f"{n} sensitivity | {n} specificity | own threshold (oracle) | sensitivity at own | specificity at own |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name, r in results.items():
            t = ((r.get("external") or {}).get(n) or {}).get("threshold_transfer")
            if not t:
                out.append(f"| {name} | – | – | – | – | – | – | – | – |")
                continue
            i, a, o = t["internal_test"], t["at_internal_threshold"], t["at_own_threshold"]
            out.append(f"| {name} | {_f(t['internal_threshold'])} | {_ci(i, 'sensitivity')} | {_ci(i, 'specificity')} "
                       f"| {_ci(a, 'sensitivity')} | {_ci(a, 'specificity')} | {_f(t['own_threshold'])} "
                       f"| {_ci(o, 'sensitivity')} | {_ci(o, 'specificity')} |")
    return "\n".join(out) + "\n"


def render(page: str, run: Path, block: str = "results") -> str:
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    if begin not in page or end not in page:
        raise SystemExit(f"the page has no {begin} ... {end} section")
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{tables(run)}{end}{tail}"


def main(argv: list[str]) -> int:
    block = "results"
    if "--block" in argv:
        i = argv.index("--block")
        block = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    args = [a for a in argv if not a.startswith("--")]
    run, page_path = Path(args[0]), Path(args[1])
    page = page_path.read_text(encoding="utf-8")
    new = render(page, run, block)
    if new == page:
        return 0
    if "--check" in argv:
        print(f"{page_path} differs from {run}'s results: run python workflow/scripts/results-external.py {' '.join(args)}"
              + (f" --block {block}" if block != "results" else ""), file=sys.stderr)
        return 1
    page_path.write_text(new, encoding="utf-8")
    print(f"{page_path}: {block} tables regenerated from {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
