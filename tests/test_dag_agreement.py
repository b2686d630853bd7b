"""Snakemake and DVC must run the same stages: same commands, inputs, outputs and params.

workflow/Snakefile and dvc.yaml are both written by hand (each in its runner's idiom); this test is
what keeps them one DAG, code dependencies included (skinlesion.stages.file_deps).
"""

from __future__ import annotations

import re
import shlex

import pytest

from skinlesion.stages import STAGE_PARAMS, file_deps

from conftest import REPO, run, tool


def _norm_cmd(cmd: str) -> str:
    cmd = re.sub(r"\s+>\s*\S+\s+2>&1\s*$", "", cmd.strip())  # Snakemake's log redirect
    return " ".join(shlex.split(cmd))


def snakemake_jobs() -> dict[str, dict]:
    out = run([tool("snakemake"), "-n", "-p", "--forceall", "results/all"], cwd=REPO).stdout
    jobs, current = {}, None
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": m.group(1), "input": [], "output": [], "wildcards": {}}
        elif current is not None and (m := re.match(r"^\s+(input|output|wildcards): (.*)$", line)):
            # " (update)": Snakemake's mark of an output it backs up and restores (the committed baseline)
            items = [x.strip().removesuffix(" (update)") for x in m.group(2).split(",")]
            if m.group(1) == "wildcards":
                current["wildcards"] = dict(x.split("=", 1) for x in items)
            else:  # params markers (skinlesion.runners) are Snakemake's own bookkeeping
                current[m.group(1)] = [x for x in items if not x.startswith(".snakemake/")]
        elif current is not None and line.startswith("Shell command: "):
            current["cmd"] = _norm_cmd(line.removeprefix("Shell command: "))
            name = current["rule"] + "".join(f"@{v}" for v in current["wildcards"].values())
            jobs[name] = current
            current = None
    return jobs


def dvc_stages() -> dict[str, dict]:
    from dvc.repo import Repo

    stages = {}
    for stage in Repo(str(REPO)).index.stages:
        params, deps = [], []
        for dep in stage.deps:
            if type(dep).__name__ == "ParamsDependency":
                params += list(dep.params)
            else:
                deps.append(dep.def_path)
        stages[stage.addressing] = {
            "cmd": _norm_cmd(stage.cmd), "deps": deps, "params": params, "outs": [o.def_path for o in stage.outs],
        }
    return stages


@pytest.fixture(scope="module")
def both():
    return snakemake_jobs(), dvc_stages()


def _covered(path: str, by: list[str]) -> bool:
    """path equals one of `by`, or lies inside one of them (a directory output or dependency)."""
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in by)


def test_same_stages(both):
    smk, dvc = both
    assert smk, "parsed no jobs from snakemake -n -p"
    assert set(smk) == set(dvc)


def test_same_commands(both):
    smk, dvc = both
    for name in dvc:
        assert smk[name]["cmd"] == dvc[name]["cmd"], name


def test_same_inputs_and_outputs(both):
    smk, dvc = both
    for name, stage in dvc.items():
        job = smk[name]
        assert all(_covered(i, stage["deps"]) for i in job["input"]), (name, job["input"], stage["deps"])
        assert all(any(_covered(i, [d]) for i in job["input"]) for d in stage["deps"] if d), (name, stage["deps"])
        assert all(_covered(o, job["output"]) for o in stage["outs"]), (name, stage["outs"], job["output"])
        assert all(any(_covered(o, [out]) for o in stage["outs"]) for out in job["output"]), (name, job["output"])


def test_same_params(both):
    _, dvc = both
    for name, stage in dvc.items():
        rule, _, variant = name.partition("@")
        expected = [k.format(variant=variant) for k in STAGE_PARAMS[rule]]
        assert sorted(stage["params"]) == sorted(expected), name
    # and every Snakemake rule hands exactly those values to its params (the rerun trigger)
    rules_text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for rule in STAGE_PARAMS:
        block = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", rules_text, re.S | re.M)
        assert block and f'cfg=stage_params("{rule}")' in block.group(1), rule


def test_both_runners_depend_on_the_code_each_stage_runs(both):
    smk, dvc = both
    for name, stage in dvc.items():
        expected = file_deps(name.partition("@")[0])
        assert expected, "skinlesion is not a source checkout here"
        code = [d for d in stage["deps"] if d.startswith(("src/", "weights/"))]
        assert code == expected, (name, "run: python workflow/scripts/sync-dvc-deps.py")
        assert [i for i in smk[name]["input"] if i.startswith(("src/", "weights/"))] == expected, name


def test_each_stage_depends_on_its_own_modules_only():
    """Module granularity: a stage reaches what it runs, and not what it cannot run."""
    assert "src/skinlesion/training.py" in file_deps("train")
    assert "src/skinlesion/training.py" not in file_deps("evaluate")
    assert "src/skinlesion/metrics.py" in file_deps("evaluate") and "src/skinlesion/metrics.py" not in file_deps("train")
    assert "src/skinlesion/sources/synthetic/__init__.py" in file_deps("fetch")  # named as a string in the registry
    assert "src/skinlesion/sources/synthetic/lesions.py" in file_deps("fetch")  # and what that package imports
    for stage in STAGE_PARAMS:
        deps = file_deps(stage)
        assert "src/skinlesion/prediction.py" not in deps and "src/skinlesion/runners.py" not in deps, stage
        assert not any(d.startswith(("tests/", "docs/")) for d in deps), stage
        assert all((REPO / d).is_file() for d in deps), stage


def test_disagreement_is_caught(both):
    """The comparison itself can fail: a changed command or a missing output is noticed."""
    smk, dvc = both
    assert _norm_cmd(dvc["fetch"]["cmd"] + " --extra") != smk["fetch"]["cmd"]
    assert not _covered("data/elsewhere", smk["fetch"]["output"])
