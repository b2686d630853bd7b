"""A DVC remote round trip (issue 22): a finished run pushed to an S3 remote, pulled into a fresh git clone,
is complete there: `dvc status` clean, `dvc repro` reruns nothing, and after workflow/scripts/after-dvc.sh
`snakemake -n` plans nothing. The remote is moto's S3 server (the `s3` fixture in conftest.py), reached
through dvc-s3 exactly as a real bucket is: only the endpoint URL and the credentials differ
(docs/cluster.md, "A DVC remote")."""

from __future__ import annotations

import hashlib

import pytest

from conftest import S3_BUCKET, copy_workflow, dvc_changed, need, planned, run, tiny_params, tool, write_params

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
GIT = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org"]
PULLED = ("data/raw", "data/interim", "data/processed", "models/logreg", "bundles/logreg")


def _params() -> dict:
    params = tiny_params(logreg={"kind": "logreg", "task": "binary"})
    params["data"]["synthetic"]["n_patients"] = 60
    params["images"]["size"] = 32
    params["evaluate"]["bootstrap"] = 50
    return params


def _digest(folder, rel: str) -> dict[str, str]:
    """{path: sha256} of every file under folder/rel."""
    root = folder / rel
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_a_pushed_run_pulls_into_a_fresh_clone_complete(tmp_path, s3):
    need("dvc_s3", "DVC's S3 remotes")
    endpoint, _ = s3
    origin = copy_workflow(tmp_path / "origin")
    write_params(origin / "params.yaml", _params())
    run(["git", "init", "-q"], cwd=origin)
    run([tool("dvc"), "init", "-q"], cwd=origin)
    run([tool("dvc"), "repro"], cwd=origin)
    # The site's step (docs/cluster.md): a default remote, its endpoint; credentials from the environment.
    run([tool("dvc"), "remote", "add", "-d", "store", f"s3://{S3_BUCKET}/skinlesion"], cwd=origin)
    run([tool("dvc"), "remote", "modify", "store", "endpointurl", endpoint], cwd=origin)
    pushed = run([tool("dvc"), "push"], cwd=origin)
    assert "pushed" in (pushed.stdout + pushed.stderr)
    run([*GIT, "add", "-A"], cwd=origin)
    run([*GIT, "commit", "-q", "-m", "a finished run"], cwd=origin)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], cwd=tmp_path)
    assert not (clone / "models" / "logreg").exists(), "the outputs should come from the remote, not git"
    run([tool("dvc"), "pull"], cwd=clone)
    for rel in PULLED:
        assert _digest(clone, rel) == _digest(origin, rel) and _digest(clone, rel), rel
    assert dvc_changed(clone) == []
    again = run([tool("dvc"), "repro"], cwd=clone)
    assert "Running stage" not in again.stdout + again.stderr
    run(["bash", "workflow/scripts/after-dvc.sh"], cwd=clone)
    assert planned(clone) == []
