"""What each pipeline stage depends on besides its data: the params it reads and the code it runs.

Both runners are held to these declarations: the Snakemake rules pass STAGE_PARAMS values as
`params:` and code_deps() files as inputs; dvc.yaml lists the same keys under `params:` and the
same files under `deps:`; tests/test_dag_agreement.py fails when either drifts apart.
`{variant}` stands for the per-variant stages' wildcard (DVC's ${key}).

Code granularity is the module file: a stage depends on every module of the package that its
command module imports, directly or through other modules (found by reading the source, so lazy
imports inside functions count, and so do module names given as strings, like the data sources'
registry). A stage therefore reruns when a module it can execute changes, and never for docs,
tests or modules it cannot reach. Finer (function-level) tracking would miss changes a function
inherits from the code it calls; coarser (the whole package) would rerun every stage for any edit.
"""

from __future__ import annotations

import ast
import os
import re
from functools import lru_cache
from pathlib import Path

STAGE_PARAMS: dict[str, list[str]] = {
    "fetch": ["seed", "data"],
    "metadata": ["seed", "metadata", "split"],
    "images": ["images"],
    "train": ["seed", "train", "variants.{variant}"],
    "external": ["metadata", "images", "evaluate.external"],
    "evaluate": ["seed", "evaluate"],
    "compare": ["variants"],
}


def lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


def section(params: dict, stage: str, **wildcards) -> dict:
    """The part of params that `stage` declares, nested as in the file: all a stage's code is given.

    A stage that read a key it does not declare would not rerun when that key changes; handing it only
    its declared keys turns such a read into an error at once instead of a stale result. A key the file
    leaves out stays out (the schema's defaults apply); a missing `{variant}` is an unknown variant."""
    view: dict = {}
    for key in STAGE_PARAMS[stage]:
        parts = key.format(**wildcards).split(".")
        source, target = params, view
        for part in parts[:-1]:
            source = source.get(part) if isinstance(source, dict) else None
            target = target.setdefault(part, {})
        if isinstance(source, dict) and parts[-1] in source:
            target[parts[-1]] = source[parts[-1]]
        elif "{variant}" in key:
            from .errors import PipelineError

            known = ", ".join(sorted((params.get("variants") or {}))) or "(none)"
            raise PipelineError(f"unknown variant '{parts[-1]}'. Variants in params: {known}.")
    return view


def values(params: dict, stage: str, **wildcards) -> dict:
    """{key: value} of what `stage` reads, for Snakemake's params rerun trigger."""
    return {key.format(**wildcards): lookup(params, key.format(**wildcards)) for key in STAGE_PARAMS[stage]}


PACKAGE_DIR = Path(__file__).resolve().parent
# Files of the repository (not the package) a stage reads whatever the params say: the ImageNet
# weights that params.yaml points train at by default (weights/README.md).
ASSETS: dict[str, list[str]] = {"train": ["weights/mobilenet_v2_1.0_224_no_top_imagenet.h5"]}
# Files a module reads at run time, by the module that reads them.
DATA_FILES = {
    "skinlesion.params": ["schemas/params.schema.yaml"],
    "skinlesion.bundle": ["schemas/bundle.schema.yaml"],
    "skinlesion.report": ["report/template.html"],
}
# Run by every stage but not followed: the CLI names every command module as a string.
ENTRY_FILES = ["skinlesion.cli", "skinlesion.commands"]
_MODULE_NAME = re.compile(r"^skinlesion(\.[a-z_][a-z0-9_]*)+$")


def _module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str) -> set[str]:
    """The skinlesion modules that `module`'s source imports anywhere, or names as a string."""
    path = _module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Module names given as strings count only where they are imported by name (importlib).
    registry = any(isinstance(n, ast.Import) and any(a.name == "importlib" for a in n.names) for n in ast.walk(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "skinlesion")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "skinlesion":
                base = node.module
            else:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}"))
        elif registry and isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.match(node.value):
            found.add(node.value)
    return {m for m in found if _module_file(m)}


def _with_packages(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


@lru_cache(maxsize=None)
def _reachable(entry: str) -> frozenset[str]:
    seen, todo = set(), [entry]
    while todo:
        module = todo.pop()
        for m in _with_packages(module):
            if m not in seen:
                seen.add(m)
                todo.extend(_imports(m))
    return frozenset(seen)


def _stage_files(stage: str) -> set[Path]:
    if stage == "compare":  # its report names the code of every stage (code_fingerprint)
        return set().union(*(_stage_files(s) for s in STAGE_PARAMS if s != "compare"), _own_files("compare"))
    return _own_files(stage)


def _own_files(stage: str) -> set[Path]:
    modules = set(_reachable(f"skinlesion.commands.{stage}"))
    modules.update(m for entry in ENTRY_FILES for m in _with_packages(entry))
    files = {_module_file(m) for m in modules}
    files.update(PACKAGE_DIR / f for m, names in DATA_FILES.items() if m in modules for f in names)
    return files


def code_deps(stage: str, root: str | Path | None = None, checkout: str | Path | None = None) -> list[str]:
    """The package files `skinlesion <stage>` runs or reads, as POSIX paths relative to `root` (default:
    the checkout), sorted. `checkout`: the repository whose src/skinlesion to name (default: the one this
    package runs from), so a workflow copied elsewhere tracks its own copy of the code, as its dvc.yaml
    does. Empty when neither is a source checkout."""
    repo = _checkout(checkout)
    if repo is None:
        return []
    root = Path(root).resolve() if root is not None else repo
    return sorted(Path(os.path.relpath(repo / "src" / "skinlesion" / f.relative_to(PACKAGE_DIR), root)).as_posix()
                  for f in _stage_files(stage))


def _checkout(checkout: str | Path | None) -> Path | None:
    if checkout is not None and (Path(checkout) / "src" / "skinlesion").is_dir():
        return Path(checkout).resolve()
    return PACKAGE_DIR.parents[1] if PACKAGE_DIR.parent.name == "src" else None


def file_deps(stage: str, root: str | Path | None = None, checkout: str | Path | None = None) -> list[str]:
    """Everything `stage` depends on besides data and params: its code, then its ASSETS."""
    code = code_deps(stage, root, checkout)
    if not code:
        return []
    repo = _checkout(checkout)
    root = Path(root).resolve() if root is not None else repo
    return code + [Path(os.path.relpath(repo / a, root)).as_posix() for a in ASSETS.get(stage, [])]


def code_fingerprint() -> str:
    """sha256 of the code every stage runs (paths inside the package and contents): names the code
    behind a report whether the package is a checkout or installed, and changes only with that code."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(_stage_files("compare")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
