#!/usr/bin/env python3
"""Rewrite the code dependencies in dvc.yaml from skinlesion.stages.file_deps (the one declaration).

Each stage's deps in dvc.yaml end with a line `# code: file_deps("<stage>")` followed by the files;
this script replaces those files with what the package declares now. Run it after changing which
modules a stage imports (tests/test_dag_agreement.py fails until you do):

    python workflow/scripts/sync-dvc-deps.py [dvc.yaml] [--check]
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


def main(argv: list[str]) -> int:
    check = "--check" in argv
    path = Path(next((a for a in argv if not a.startswith("--")), "dvc.yaml"))
    text = path.read_text(encoding="utf-8")
    new = synced(text, path.resolve().parent)
    if new == text:
        return 0
    if check:
        print(f"{path}: code dependencies differ from skinlesion.stages.file_deps; run {sys.argv[0]}", file=sys.stderr)
        return 1
    path.write_text(new, encoding="utf-8")
    print(f"{path}: code dependencies updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
