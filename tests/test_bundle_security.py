"""A bundle is untrusted input: crafted bundles through `skinlesion predict` and `skinlesion recalibrate`.

Each crafted bundle must end in exit status 2 with one line naming the problem, no traceback, and nothing
written anywhere (neither outside the output folder nor the output itself); none reads outside the bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from skinlesion import bundle, cli, tasks  # noqa: E402
from skinlesion.bundle import Bundle  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.io import read_json, write_json  # noqa: E402
from conftest import CNN_SIZE, records  # noqa: E402


def _tiny(kind: str = "plain", size: int = CNN_SIZE, outputs: int = 1):
    """A small Keras model: `lambda` holds a Lambda layer, `backbone` a nested sub-model (as a pretrained
    backbone is)."""
    import keras
    from keras import layers

    image = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="preprocess")(image)
    if kind == "lambda":
        x = layers.Lambda(lambda t: t * 2.0, name="doubled")(x)
    if kind == "backbone":
        inner_in = keras.Input((size, size, 3))
        inner = keras.Model(inner_in, layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inner_in)),
                            name="mobilenetv2_1.00_32")
        x = inner(x)
    else:
        x = layers.Flatten()(layers.Conv2D(2, 3, name="conv0")(x))
    out = layers.Dense(outputs, activation="sigmoid" if outputs == 1 else "softmax", name="output")(x)
    return keras.Model(image, out, name="crafted")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"ISIC_{i:07d}.jpg")
    return folder


@pytest.fixture
def world(tmp_path, cnn_dir, make_raw):
    """tmp_path/bundle (a good copy of cnn_dir), tmp_path/outside/model.keras (a model outside it), a labelled
    set for recalibrate."""
    good = tmp_path / "bundle"
    shutil.copytree(cnn_dir, good)
    (tmp_path / "outside").mkdir()
    shutil.copyfile(cnn_dir / "model.keras", tmp_path / "outside" / "model.keras")
    clinic = make_raw(records(12), name="clinic")
    return good, clinic


def _info(folder):
    return read_json(folder / bundle.MANIFEST)


def _reseal(folder, **changes):
    """bundle.json with `changes`, its `files` recomputed: a bundle crafted to pass the integrity check."""
    info = {**_info(folder), **changes}
    info["files"] = {}
    write_json(folder / bundle.MANIFEST, {**info, "files": bundle.file_hashes(folder)})


def _save(model, folder, name="model.keras"):
    (folder / "model.keras").unlink()
    model.save(folder / name)


def _craft(case: str, b, tmp_path):
    info = _info(b)
    if case == "absolute_model_path":
        _reseal(b, model_file=str(tmp_path / "outside" / "model.keras"))
    elif case == "dotdot_model_path":
        _reseal(b, model_file="../outside/model.keras")
    elif case == "deep_dotdot_model_path":
        _reseal(b, model_file="../../outside/model.keras")
    elif case == "etc_passwd":
        _reseal(b, model_file="/etc/passwd")
    elif case == "symlink_out":
        digest = bundle.file_sha256(tmp_path / "outside" / "model.keras")
        (b / "model.keras").unlink()
        (b / "model.keras").symlink_to(tmp_path / "outside" / "model.keras")
        write_json(b / bundle.MANIFEST, {**info, "files": {"model.keras": digest}})
    elif case == "symlinked_manifest":
        (tmp_path / "outside" / "bundle.json").write_text((b / bundle.MANIFEST).read_text())
        (b / bundle.MANIFEST).unlink()
        (b / bundle.MANIFEST).symlink_to(tmp_path / "outside" / "bundle.json")
    elif case == "changed_byte":
        data = bytearray((b / "model.keras").read_bytes())
        data[len(data) // 2] ^= 1
        (b / "model.keras").write_bytes(bytes(data))
    elif case == "extra_file":
        (b / "notes.txt").write_text("not in files")
    elif case == "missing_hash":
        write_json(b / bundle.MANIFEST, {**info, "files": {}})
    elif case == "old_format":
        write_json(b / bundle.MANIFEST, {k: v for k, v in {**info, "format": 1}.items() if k != "files"})
    elif case == "empty_manifest":
        (b / bundle.MANIFEST).write_text("")
    elif case == "list_manifest":
        (b / bundle.MANIFEST).write_text("[1, 2, 3]")
    elif case == "not_json":
        (b / bundle.MANIFEST).write_text("{variant: ")
    elif case == "huge_manifest":
        (b / bundle.MANIFEST).write_text('{"format": 2, "pad": "' + "x" * (bundle.MAX_MANIFEST + 10) + '"}')
    elif case.startswith("missing_"):
        field = case.removeprefix("missing_")
        write_json(b / bundle.MANIFEST, {k: v for k, v in info.items() if k != field})
    elif case == "string_threshold":
        _reseal(b, decision={"threshold": "0.5", "calibration": "none", "temperature": 1.0})
    elif case == "unknown_kind":
        _reseal(b, kind="svm")
    elif case == "unknown_task":
        _reseal(b, task="ternary")
    elif case == "classes_not_the_tasks":
        _reseal(b, classes=["healthy", "sick"])
    elif case == "logreg_with_keras_file":
        _reseal(b, kind="logreg", input=None, metadata={"features": ["age_approx"], "columns": [
            "age_approx", "age_approx_missing"], "imputation_means": {}})
    elif case == "cnn_with_other_file":
        (b / "model.keras").rename(b / "model.npz")
        _reseal(b, model_file="model.npz")
    elif case == "wrong_input_size":
        _reseal(b, input={**info["input"], "image_size": 64})
    elif case == "huge_image_size":
        _reseal(b, input={**info["input"], "image_size": 10 ** 6})
    elif case == "binary_model_multiclass_manifest":
        _reseal(b, task="multiclass", classes=list(tasks.get("multiclass").classes))
    elif case == "multiclass_model_binary_manifest":
        _save(_tiny(outputs=5), b)
        _reseal(b)
    elif case == "cnn_over_a_backbone":
        _save(_tiny("backbone"), b)
        _reseal(b)
    elif case == "lambda_layer":
        _save(_tiny("lambda"), b)
        _reseal(b)
    elif case == "truncated_model":
        data = (b / "model.keras").read_bytes()
        (b / "model.keras").write_bytes(data[: len(data) // 2])
        _reseal(b)
    elif case == "zero_byte_model":
        (b / "model.keras").write_bytes(b"")
        _reseal(b)
    elif case == "folder_in_bundle":
        (b / "sub").mkdir()
    else:
        raise AssertionError(case)


CASES = {  # case: what the one line must say
    "absolute_model_path": "'model_file'",
    "dotdot_model_path": "'model_file'",
    "deep_dotdot_model_path": "'model_file'",
    "etc_passwd": "'model_file'",
    "symlink_out": "is a symbolic link",
    "symlinked_manifest": "is a symbolic link",
    "changed_byte": "model.keras has changed",
    "extra_file": "notes.txt is not one of the files",
    "missing_hash": "'files'",
    "old_format": "re-run skinlesion train",
    "empty_manifest": "is empty",
    "list_manifest": "holds a JSON list: expected an object",
    "not_json": "is not valid JSON",
    "huge_manifest": "over the",
    "missing_variant": "'variant' is a required property",
    "missing_kind": "'kind' is a required property",
    "missing_task": "'task' is a required property",
    "missing_model_file": "'model_file' is a required property",
    "missing_files": "'files' is a required property",  # a format-2 bundle.json without `files`
    "string_threshold": "'decision.threshold'",
    "unknown_kind": "Allowed: logreg",
    "unknown_task": "Allowed: binary",
    "classes_not_the_tasks": "'classes'",
    "logreg_with_keras_file": "does not match kind logreg",
    "cnn_with_other_file": "does not match kind cnn",
    "wrong_input_size": "'input.image_size' is 64",
    "huge_image_size": "'input.image_size'",
    "binary_model_multiclass_manifest": "'task' is multiclass",
    "multiclass_model_binary_manifest": "'task' is binary",
    "cnn_over_a_backbone": "sub-model",
    "lambda_layer": "cannot be loaded as a Keras model",
    "truncated_model": "cannot be loaded as a Keras model",
    "zero_byte_model": "cannot be loaded as a Keras model",
    "folder_in_bundle": "sub is not a plain file",
}


def _tree(root) -> dict:
    """Every path under root (links not followed) with its content's sha256: what a run may not change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                out[p] = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[p] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[p] = "dir"
    return out


def _one_line_error(err: str, needle: str, command: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"skinlesion {command}: error:")]
    assert "Traceback" not in err
    assert len(errors) == 1, err
    assert needle in errors[0], errors[0]
    assert len(errors[0]) < 1000


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_bundle_is_one_line_through_predict_and_recalibrate(case, world, photos, tmp_path, capsys):
    b, clinic = world
    _craft(case, b, tmp_path)
    before = _tree(tmp_path)
    # predict
    out = tmp_path / "scores" / "scores.csv"
    capsys.readouterr()
    started = time.monotonic()
    rc = cli.main(["predict", str(b), str(photos), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    _one_line_error(err, CASES[case], "predict")
    assert time.monotonic() - started < 60
    # recalibrate, its output three levels down (a `../../` model path must not land in recal/x/)
    newb = tmp_path / "recal" / "x" / "y" / "newb"
    rc = cli.main(["recalibrate", str(b), str(clinic), "--target-sensitivity", "0.8", "-o", str(newb),
                   "--bootstrap", "0", "--cv", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    # recalibrate refuses a multiclass bundle.json first: recalibration is binary only
    _one_line_error(err, "is a multiclass bundle" if case == "binary_model_multiclass_manifest" else CASES[case],
                    "recalibrate")
    # nothing written anywhere: not the outputs, not beside them, not outside the bundle
    assert _tree(tmp_path) == before
    assert not out.exists() and not (tmp_path / "recal").exists()


def test_a_huge_image_size_is_refused_before_any_file_is_read(world, tmp_path, monkeypatch):
    b, _ = world
    _craft("huge_image_size", b, tmp_path)
    read = []
    monkeypatch.setattr(bundle, "file_sha256", lambda *a, **k: read.append(a) or "0" * 64)
    started = time.monotonic()
    with pytest.raises(PipelineError, match="image_size"):
        Bundle(b)
    assert time.monotonic() - started < 5 and read == []


def test_the_good_copy_scores_and_recalibrate_writes_a_sealed_bundle_inside_its_output(world, photos, tmp_path):
    """The fixture's bundle is good: the cases above fail for what was crafted, not for the fixture."""
    b, clinic = world
    assert cli.main(["predict", str(b), str(photos), "-o", str(tmp_path / "s.csv")]) == 0
    done = Bundle(b).complete(tmp_path / "out" / "complete", {"threshold": 0.5, "calibration": "none",
                                                               "temperature": 1.0})
    info = _info(done)
    assert info["format"] == bundle.FORMAT
    assert info["files"] == {"model.keras": bundle.file_sha256(b / "model.keras")}
    assert sorted(p.name for p in done.iterdir()) == ["bundle.json", "model.keras"]
    assert Bundle(done).decision["threshold"] == 0.5


def test_train_records_every_file_it_writes(cnn_dir):
    info = _info(cnn_dir)
    assert set(info["files"]) == {p.name for p in cnn_dir.iterdir()} - {bundle.MANIFEST}
    assert all(len(h) == 64 for h in info["files"].values())


def test_a_changed_file_of_train_is_named(world):
    b, _ = world
    (b / "extra.json").write_text("{}")
    _reseal(b)
    Bundle(b)  # sealed: fine
    (b / "extra.json").write_text('{"changed": true}')
    with pytest.raises(PipelineError, match="extra.json has changed"):
        Bundle(b)
    (b / "extra.json").unlink()
    with pytest.raises(PipelineError, match="extra.json is missing"):
        Bundle(b)


def test_the_bundle_schema_is_valid_and_the_committed_docs_name_files():
    import jsonschema

    from skinlesion import params

    jsonschema.Draft202012Validator.check_schema(params.schema("bundle"))
    assert "`files`" in (params.schema_path().parents[3] / "docs" / "predict.md").read_text()
