"""The pipeline checks CI relies on: lint clean, the DAG builds under both runners, CLI errors are clear."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, base_params, copy_workflow, run, tool, write_params


def test_snakemake_lint_is_clean():
    proc = run([tool("snakemake"), "--lint"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakemake_dry_run_and_dvc_dag_succeed():
    run([tool("snakemake"), "-n", "results/all"], cwd=REPO)
    dag = run([tool("dvc"), "dag", "--md"], cwd=REPO).stdout
    for stage in ("fetch", "metadata", "images", "compare"):
        assert stage in dag
    for variant in base_params()["variants"]:
        assert f"train@{variant}" in dag and f"evaluate@{variant}" in dag


def test_snakemake_refuses_an_invalid_config(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    params = base_params()
    params["images"]["size"] = "big"
    write_params(wf / "params.yaml", params)
    proc = run([tool("snakemake"), "-n", "results/all"], cwd=wf, check=False)
    assert proc.returncode != 0
    # one message, the stage commands' own (issue 21: Snakemake's validate printed ten lines and the schema)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "profile" not in line]
    assert errors == ["error: params.yaml: invalid value at 'images.size': 'big' is not of type 'integer'."], errors


def test_snakemake_refuses_a_key_given_twice(tmp_path):
    """Snakemake's own YAML reading keeps the last of two equal keys (DVC refuses the file): the workflow
    reads its config files with the stage commands' loader and stops, naming the key and both lines."""
    wf = copy_workflow(tmp_path / "wf")
    text = (REPO / "params.yaml").read_text()
    (wf / "params.yaml").write_text(text + "seed: 7\n")
    proc = run([tool("snakemake"), "-n", "results/all"], cwd=wf, check=False)
    assert proc.returncode != 0
    first, second = text.splitlines().index("seed: 42") + 1, len(text.splitlines()) + 1
    assert f"duplicate key 'seed' at lines {first} and {second}" in proc.stdout + proc.stderr


@pytest.mark.parametrize("targets", [["bundles/logreg", "bundles/cnn"], ["models/cnn"],
                                     ["results/variants/logreg/metrics.json", "bundles/mobilenet_frozen"]])
def test_any_targets_plan_on_a_fresh_copy_the_first_time(tmp_path, targets):
    """Issue 21: the params markers were written by input functions while the DAG was built, and a marker
    made after Snakemake had listed its folder was reported missing (MissingInputException) on the first
    plan of two targets in a fresh clone."""
    wf = copy_workflow(tmp_path / "wf")
    write_params(wf / "params.yaml", base_params())
    proc = run([tool("snakemake"), "-n", *targets], cwd=wf, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for target in targets:
        assert target.split("/")[1] in proc.stdout


def test_new_variant_in_params_adds_stages_to_both_runners(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    params = base_params()
    params["variants"]["extra_cnn"] = {"kind": "cnn", "task": "binary", "epochs": 2}
    write_params(wf / "params.yaml", params)
    run(["git", "init", "-q"], cwd=wf)
    run([tool("dvc"), "init", "-q"], cwd=wf)
    assert "evaluate@extra_cnn" in run([tool("dvc"), "dag", "--md"], cwd=wf).stdout
    assert "results/variants/extra_cnn/metrics.json" in run([tool("snakemake"), "-n", "-p", "results/all"], cwd=wf).stdout


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = base_params()
    bad["variants"]["logreg"]["kind"] = "svm"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = run([tool("skinlesion"), "validate", "--params", str(path)], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "variants.logreg.kind" in proc.stderr and "Allowed" in proc.stderr


@pytest.mark.parametrize("command", ["fetch", "download", "metadata", "images", "train", "evaluate", "compare", "predict",
                                     "recalibrate"])
def test_every_command_documents_itself(command):
    proc = run([tool("skinlesion"), command, "--help"], cwd=REPO)
    assert "usage: skinlesion" in proc.stdout and len(proc.stdout.splitlines()) > 3


def test_plain_and_configfile_forms_plan_the_same_commands(tmp_path):
    """`snakemake` and `snakemake --configfile params.yaml` must hand the stages the same command lines
    (the same --params or none): otherwise switching between the forms reruns every job."""
    wf = copy_workflow(tmp_path / "wf")
    write_params(wf / "params.yaml", base_params())

    def commands(*extra):
        out = run([tool("snakemake"), "-n", "-p", *extra, "results/all"], cwd=wf).stdout
        return sorted(line.split("Shell command: ", 1)[1] for line in out.splitlines() if "Shell command: skinlesion " in line)

    plain = commands()
    assert plain and all("--params" not in c for c in plain)
    assert commands("--configfile=params.yaml") == plain
    assert commands(f"--configfile={wf / 'params.yaml'}") == plain
