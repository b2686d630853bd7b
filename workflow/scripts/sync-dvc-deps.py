#!/usr/bin/env python3
"""Rewrite the code dependencies in dvc.yaml from skinlesion.stages.file_deps (the one declaration),
and every experiments/<name>/dvc.yaml from the root one.

Each stage's deps in dvc.yaml end with a line `# code: file_deps("<stage>")` followed by the files;
this script replaces those files with what the package declares now. An experiment folder's dvc.yaml
is the root dvc.yaml with those paths relative to its folder (its stages run there, on its own
params.yaml). Run it after changing which modules a stage imports or the root dvc.yaml
(tests/test_dag_agreement.py fails until you do):

    python workflow/scripts/sync-dvc-deps.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from skinlesion.stages import file_deps

MARKER = re.compile(r'^(?P<indent> *)# code: file_deps\("(?P<stage>\w+)"\)\n', re.M)


def synced(text: str, root: Path) -> str:
    out, pos = [], 0
    for m in MARKER.finditer(text):
        out.append(text[pos:m.end()])
        indent, pos = m.group("indent"), m.end()
        item = re.compile(rf"^{indent}- (\.\./)*(src|weights)/\S+\n", re.M)
        while (n := item.match(text, pos)):
            pos = n.end()
        out.append("".join(f"{indent}- {path}\n" for path in file_deps(m.group("stage"), root)))
    out.append(text[pos:])
    return "".join(out)


EXPERIMENT_HEADER = ("# GENERATED from the repository's dvc.yaml by workflow/scripts/sync-dvc-deps.py: edit that one.\n"
                     "# The same stages, run in this folder on its params.yaml.\n")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    repo = Path(__file__).resolve().parents[2]
    root_text = (repo / "dvc.yaml").read_text(encoding="utf-8")
    wanted = {repo / "dvc.yaml": synced(root_text, repo)}
    for folder in sorted(p.parent for p in (repo / "experiments").glob("*/params.yaml")):
        wanted[folder / "dvc.yaml"] = EXPERIMENT_HEADER + synced(wanted[repo / "dvc.yaml"], folder)
    stale = [path for path, text in wanted.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    for path in stale:
        if check:
            print(f"{path.relative_to(repo)}: out of date with skinlesion.stages.file_deps / dvc.yaml; "
                  f"run python workflow/scripts/sync-dvc-deps.py", file=sys.stderr)
        else:
            path.write_text(wanted[path], encoding="utf-8")
            print(f"{path.relative_to(repo)}: updated")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
