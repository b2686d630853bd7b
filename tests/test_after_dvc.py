"""A no-op stays a no-op after DVC rewrites outputs (issue 12): `dvc commit -f` after a Snakemake run, or
`dvc checkout`, then workflow/scripts/after-dvc.sh, and `snakemake -n` plans nothing; a real change still
plans its jobs.

`dvc commit -f` gives the single-file outputs it caches new mtimes, newer than what was made from them.
Snakemake forgives that only for files under its checksum limit (--max-checksum-file-size, 1 MB) whose
checksum it recorded when it ran the job, so on this tiny project the commit alone looks harmless; at scale
(metadata.parquet over 1 MB, or outputs that `dvc repro` made) it plans 5 jobs. `--max-checksum-file-size 0`
plans as at scale.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from conftest import copy_workflow, dvc_changed, planned, run, tiny_params, tool, write_params

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
AT_SCALE = ("--max-checksum-file-size", "0")
AFTER_DVC = ["bash", "workflow/scripts/after-dvc.sh"]
DOWNSTREAM_OF_METADATA = ["compare", "evaluate@logreg", "external", "images", "train@logreg"]


def small_params() -> dict:
    params = tiny_params(logreg={"kind": "logreg", "task": "binary"})
    params["data"]["synthetic"]["n_patients"] = 60
    params["images"]["size"] = 32
    params["evaluate"]["bootstrap"] = 50
    params["evaluate"]["external"] = []
    return params


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """{runner: a project whose outputs that runner made}, each a git + DVC repository; tests work on copies."""
    projects = {}
    for runner in ("snakemake", "dvc"):
        folder = copy_workflow(tmp_path_factory.mktemp(runner))
        write_params(folder / "params.yaml", small_params())
        run(["git", "init", "-q"], cwd=folder)
        run([tool("dvc"), "init", "-q"], cwd=folder)
        run([tool("snakemake"), "--cores", "2", "results/all"] if runner == "snakemake" else [tool("dvc"), "repro"],
            cwd=folder)
        projects[runner] = folder
    return projects


@pytest.fixture
def project(made, tmp_path, request):
    """A copy of made[request.param] (mtimes kept), so every test starts from the runner's finished run."""
    return shutil.copytree(made[request.param], tmp_path / "project", symlinks=True)


@pytest.mark.parametrize("project", ["snakemake", "dvc"], indirect=True)
def test_dvc_commit_then_after_dvc_plans_nothing(project):
    run([tool("dvc"), "commit", "-f"], cwd=project)
    assert planned(project, *AT_SCALE) == DOWNSTREAM_OF_METADATA, "the commit no longer re-dates outputs?"
    run(AFTER_DVC, cwd=project)
    assert planned(project, *AT_SCALE) == []
    assert planned(project) == []
    assert dvc_changed(project) == []


@pytest.mark.parametrize("project", ["snakemake"], indirect=True)
def test_dvc_checkout_then_the_former_script_name_plans_nothing(project):
    run([tool("dvc"), "commit", "-f"], cwd=project)
    for path in ("data/interim/metadata.parquet", "data/processed/shards", "models/logreg"):
        (shutil.rmtree if (project / path).is_dir() else lambda p: p.unlink())(project / path)
    run([tool("dvc"), "checkout"], cwd=project)
    assert planned(project, *AT_SCALE) != []
    run(["bash", "workflow/scripts/after-dvc-checkout.sh"], cwd=project)  # the name before after-dvc.sh
    assert planned(project, *AT_SCALE) == []


@pytest.mark.parametrize("project", ["snakemake"], indirect=True)
def test_a_real_change_still_plans_jobs_and_the_step_refuses_to_hide_it(project):
    run([tool("dvc"), "commit", "-f"], cwd=project)
    run(AFTER_DVC, cwd=project)
    assert planned(project, *AT_SCALE) == []

    table = project / "data" / "interim" / "metadata.parquet"
    pd.read_parquet(table).iloc[:-1].to_parquet(table)  # other content, a new mtime
    changed = ["compare", "evaluate@logreg", "images", "train@logreg"]  # what reads the table, and after
    assert planned(project) == changed  # its checksum differs too
    refused = run(AFTER_DVC, cwd=project, check=False)
    assert refused.returncode == 1 and "differ from dvc.lock" in refused.stderr
    assert planned(project) == changed  # nothing was dated
    run([tool("dvc"), "checkout", "--force", "data/interim/metadata.parquet"], cwd=project)
    run(AFTER_DVC, cwd=project)
    assert planned(project, *AT_SCALE) == []

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["target_sensitivity"] = 0.8
    write_params(project / "params.yaml", params)
    assert planned(project) == ["compare", "evaluate@logreg"]
    assert run(AFTER_DVC, cwd=project, check=False).returncode == 1
    assert planned(project) == ["compare", "evaluate@logreg"]
