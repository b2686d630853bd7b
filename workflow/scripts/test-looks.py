#!/usr/bin/env python3
"""The test-look ledger of a committed experiment: every time its test split was scored (docs/evaluation.md,
"One look at test").

An experiment folder keeps `results/test-looks.yaml`, a list of looks: each committed run of the experiment,
and each benchmark that scored the same test split again. An experiment run's entry carries the digest of
the evaluations it committed (sha256 over every results/variants/<variant>/evaluation.json, by variant
name), so a new run cannot be committed without a new entry: `--check` fails when the newest run entry's
digest is not the one of the files (tests/test_results_doc.py runs it).

    python workflow/scripts/test-looks.py experiments/ham10000 --check    # the ledger covers the committed run
    python workflow/scripts/test-looks.py experiments/ham10000 --digest   # the digest a new run entry records
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

LEDGER = Path("results") / "test-looks.yaml"
ENTRY_KEYS = {"date", "kind", "by", "what", "test_scored", "chosen_on_test"}
KINDS = ("experiment run", "benchmark")


def digest(experiment: Path) -> str:
    """sha256 over (variant name, evaluation.json bytes) of every variant, sorted by name."""
    h = hashlib.sha256()
    files = sorted((experiment / "results" / "variants").glob("*/evaluation.json"))
    if not files:
        raise SystemExit(f"{experiment}/results/variants has no evaluation.json: nothing was scored")
    for f in files:
        h.update(f.parent.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def check(experiment: Path) -> list[str]:
    """The ledger's problems, as lines for a person (empty when it covers the committed run)."""
    path = experiment / LEDGER
    try:
        looks = (yaml.safe_load(path.read_text()) or {}).get("looks")
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: cannot be read ({exc})"]
    if not isinstance(looks, list) or not looks:
        return [f"{path}: `looks:` must be a non-empty list"]
    problems = []
    for i, look in enumerate(looks, 1):
        missing = ENTRY_KEYS - set(look or {})
        if missing:
            problems.append(f"{path}: look {i} lacks {sorted(missing)}")
        elif look["kind"] not in KINDS:
            problems.append(f"{path}: look {i} kind {look['kind']!r} is not one of {KINDS}")
    runs = [look for look in looks if (look or {}).get("kind") == "experiment run"]
    current = digest(experiment)
    if not runs or runs[-1].get("evaluations_sha256") != current:
        problems.append(f"{path}: the committed evaluations (digest {current}) have no `experiment run` entry: "
                        "results/variants changed, so the test split was scored again; add a look with "
                        f"evaluations_sha256: {current}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", type=Path, help="an experiment folder, e.g. experiments/ham10000")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--check", action="store_true", help="fail when the ledger does not cover the committed run")
    what.add_argument("--digest", action="store_true", help="print the digest of the committed evaluations")
    args = ap.parse_args(argv)
    if args.digest:
        print(digest(args.experiment))
        return 0
    problems = check(args.experiment)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
