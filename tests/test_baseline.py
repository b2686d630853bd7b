"""The committed baseline reproduces: `dvc repro` of the default params.yaml in a fresh folder gives the
committed dvc.lock, results/variants/*/{metrics.json, evaluation.json, plots/*.csv} and
results/all/metrics.csv.

Byte for byte on the platform the baseline was made on (results/baseline-platform.json: CPU vector
extensions and library versions decide float rounding). Elsewhere the data stages must still match
exactly and every metric within TOLERANCE, which the test prints with the largest difference it saw.
Regenerate the baseline with `dvc repro && python -m skinlesion.platform_id > results/baseline-platform.json`.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from conftest import REPO, copy_workflow, run, tool

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
TOLERANCE = 0.02  # absolute, on every number of metrics.json and evaluation.json, off the baseline's platform
DATA_STAGES = ("fetch", "metadata", "images")


def committed() -> list[str]:
    files = subprocess.run(["git", "ls-files", "dvc.lock", "results"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    return [f for f in files if f != "results/baseline-platform.json"]


def _numbers(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix, float(node)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    files = committed()
    if "dvc.lock" not in files:
        pytest.fail("no committed baseline: run `dvc repro` on params.yaml and commit dvc.lock and results/")
    folder = copy_workflow(tmp_path_factory.mktemp("baseline"))
    (folder / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    run(["git", "init", "-q"], cwd=folder)
    run([tool("dvc"), "init", "-q"], cwd=folder)
    run([tool("dvc"), "repro"], cwd=folder, timeout=2200)
    return folder, files


def test_baseline_reproduces(reproduced):
    from skinlesion.platform_id import describe

    folder, files = reproduced
    same_platform = json.loads((REPO / "results" / "baseline-platform.json").read_text()) == describe()
    differ = [f for f in files if (folder / f).read_bytes() != (REPO / f).read_bytes()]
    print(f"baseline: {len(files)} committed files, {len(differ)} not byte-identical; "
          f"platform {'the same as' if same_platform else 'differs from'} the baseline's")
    if same_platform:
        assert differ == [], f"not reproduced byte for byte: {differ}"
        return
    locks = [yaml.safe_load((d / "dvc.lock").read_text())["stages"] for d in (folder, REPO)]
    for stage in DATA_STAGES:
        assert locks[0][stage] == locks[1][stage], f"data stage {stage} must reproduce exactly on any platform"
    worst = ("", 0.0)
    for f in files:
        if not f.endswith(".json"):
            continue
        new, old = (dict(_numbers(json.loads((d / f).read_text()))) for d in (folder, REPO))
        assert new.keys() == old.keys(), f
        for key in old:
            gap = abs(new[key] - old[key])
            worst = max(worst, (f"{f}:{key}", gap), key=lambda t: t[1])
    print(f"baseline: off its platform, largest metric difference {worst[1]:.6f} at {worst[0]} "
          f"(tolerance {TOLERANCE})")
    assert worst[1] <= TOLERANCE, worst
