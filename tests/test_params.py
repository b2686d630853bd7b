import copy

import pytest
import yaml

from skinlesion import params as P
from skinlesion.errors import PipelineError

from conftest import REPO, base_params


def test_shipped_params_files_are_valid():
    for path in REPO.glob("params*.yaml"):
        P.load(path)


@pytest.mark.parametrize(
    "edit, key, hint",
    [
        (lambda p: p["variants"]["logreg"].__setitem__("kind", "logregg"), "variants.logreg.kind", "Allowed: logreg"),
        (lambda p: p["images"].__setitem__("size", 8), "images.size", "minimum"),
        (lambda p: p["split"].__setitem__("tset", 0.2), "split", "Known keys here: test, val"),
        (lambda p: p["data"].__setitem__("source", "s3"), "data.source", "Allowed: synthetic, local, isic"),
    ],
)
def test_bad_value_names_key_and_what_is_allowed(tmp_path, edit, key, hint):
    params = base_params()
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError) as err:
        P.load(path)
    assert f"'{key}'" in str(err.value) and hint in str(err.value)


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        P.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        P.load(bad)


def test_variant_inherits_train_defaults_and_overrides_win():
    params = copy.deepcopy(base_params())
    params["variants"]["v"] = {"kind": "cnn", "task": "binary", "epochs": 3}
    merged = P.variant(params, "v")
    assert merged["epochs"] == 3
    assert merged["learning_rate"] == params["train"]["learning_rate"]
    assert merged["batch_size"] == params["train"]["batch_size"]
    assert merged["name"] == "v"
    with pytest.raises(PipelineError, match="unknown variant 'nope'"):
        P.variant(params, "nope")
