import copy

import pytest
import yaml

from skinlesion import params as P
from skinlesion import variant
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
        (lambda p: p["train"].__setitem__("learning_rat", 0.1), "train", "Known keys here: batch_size, distribute, epochs"),
        (lambda p: p["variants"].__setitem__("dual_x", {"kind": "dual", "task": "binary", "backbone": "mobilenet_v2",
                                                         "features": ["age_approx", "shoe_size"]}),
         "variants.dual_x.features.1", "Allowed: age_approx, sex, clin_size_long_diam_mm"),
        (lambda p: p["data"]["isic"].__setitem__("max_body_byte", 1), "data.isic", "Known keys here: allow_skipped, allowed_hosts"),
        (lambda p: p["images"].__setitem__("max_pixel", 1), "images",
         "Known keys here: aspect, colour_constancy, colour_constancy_p, max_pixels"),
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
    merged = variant.from_params(params, "v")
    assert merged.epochs == 3
    assert merged.learning_rate == params["train"]["learning_rate"]
    assert merged.batch_size == params["train"]["batch_size"]
    assert merged.name == "v"
    with pytest.raises(PipelineError, match="unknown variant 'nope'"):
        variant.from_params(params, "nope")


def test_variant_defaults_come_from_the_schema_and_the_kind():
    """The one place defaults live: the schema's `default:` (and the kind's dropout); an empty variant gets them."""
    bare = variant.of({"kind": "mlp", "task": "binary"})
    defaults = variant.schema_defaults()
    assert bare.hidden_units == tuple(defaults["hidden_units"]) == (64, 32)
    assert bare.features == tuple(defaults["features"]) and bare.dense_units == defaults["dense_units"] == 128
    assert bare.sampling.strategy == defaults["sampling"]["strategy"] == "natural"
    assert (bare.learning_rate, bare.batch_size, bare.epochs, bare.patience) == (0.001, 32, 50, 10)
    assert bare.dropout == 0.3 and variant.of({"kind": "cnn", "task": "binary"}).dropout == 0.0
    assert bare.augment is None and not bare.augmented
    flips = variant.of({"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "augment": {"zoom": 0}})
    assert flips.augmented and flips.flips_only  # flip defaults to on
    tuned = variant.of({"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "freeze": False,
                        "epochs": 7, "learning_rate": 0.01})
    assert (tuned.fine_tune.warmup_epochs, tuned.fine_tune.epochs) == (7, 7)
    assert tuned.fine_tune.learning_rate == pytest.approx(0.001) and tuned.fine_tune.unfreeze_from is None


def test_a_transfer_variant_without_a_backbone_fails_validation(tmp_path, capsys):
    from skinlesion import cli

    params = copy.deepcopy(base_params())
    params["variants"]["v"] = {"kind": "transfer", "task": "binary"}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert cli.main(["validate", "--params", str(path)]) == 2
    assert "variant v: kind transfer needs a backbone" in capsys.readouterr().err
    with pytest.raises(PipelineError, match="variant v: kind transfer needs a backbone"):
        variant.from_params(params, "v")  # and train, which builds the variant, stops the same way


def test_every_mapping_in_the_schema_rejects_unknown_keys():
    """Walk the schema: each object either lists its properties with additionalProperties: false, or is a
    map whose values are themselves checked (variants, max_per_class)."""
    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                assert node.get("additionalProperties") is False or isinstance(node.get("additionalProperties"), dict), where
                if "properties" in node:
                    assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(P.schema(), "schema")


def test_the_schema_knows_exactly_the_metadata_features():
    from skinlesion import features

    allowed = P.schema()["$defs"]["variant"]["properties"]["features"]["items"]["enum"]
    assert sorted(allowed) == sorted(features.KNOWN)
    assert set(variant.schema_defaults()["features"]) <= set(features.KNOWN)


def test_new_isic_and_images_keys_have_schema_defaults_equal_to_the_code():
    from skinlesion import images
    from skinlesion.sources.isic.options import Options

    isic = P.schema()["properties"]["data"]["properties"]["isic"]["properties"]
    defaults = Options()
    for key in ("max_body_bytes", "max_json_bytes", "max_attempts", "file_deadline"):
        assert isic[key]["default"] == getattr(defaults, key), key
    assert tuple(isic["allowed_hosts"]["default"]) == defaults.allowed_hosts
    assert P.schema()["properties"]["images"]["properties"]["max_pixels"]["default"] == images.DEFAULT_MAX_PIXELS
    for path in [*REPO.glob("params*.yaml"), *REPO.glob("experiments/*/params.yaml")]:
        params = P.load(path)
        assert params["data"]["isic"]["max_body_bytes"] == defaults.max_body_bytes, path
        assert params["images"]["max_pixels"] == images.DEFAULT_MAX_PIXELS, path


def test_a_weights_path_that_does_not_exist_is_named_before_any_download(tmp_path, monkeypatch):
    from skinlesion import weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    monkeypatch.setattr(weights, "_download", lambda *a, **k: pytest.fail("tried to download"))
    missing = tmp_path / "nope" / "mobilenet.h5"
    with pytest.raises(PipelineError) as err:
        weights.resolve("mobilenet_v2", str(missing), 128, allow_random=True)
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)


def test_each_stage_is_given_only_the_params_it_declares():
    """A stage whose code read an undeclared key would not rerun when that key changes: it gets none."""
    from skinlesion.stages import STAGE_PARAMS, section

    params = base_params()
    train = section(params, "train", variant="logreg")
    assert set(train) == {"seed", "train", "variants"} and set(train["variants"]) == {"logreg"}
    assert train["variants"]["logreg"] == params["variants"]["logreg"]
    assert set(section(params, "images")) == {"images"}
    assert "data" not in section(params, "metadata")  # nothing after fetch knows where the data came from
    for stage in STAGE_PARAMS:
        if "{variant}" not in " ".join(STAGE_PARAMS[stage]):
            assert set(section(params, stage)) == {k.split(".")[0] for k in STAGE_PARAMS[stage]}, stage
    with pytest.raises(PipelineError, match="unknown variant 'nope'. Variants in params: .*logreg"):
        section(params, "train", variant="nope")
    assert variant.from_params(train, "logreg") == variant.from_params(params, "logreg")


DUPLICATES = {  # the line a second key is written after, the key it repeats, its dotted name
    "top level": ("seed: 42\n", "seed: 7\n", "seed"),
    "nested": ("  epochs: 50\n", "  epochs: 5\n", "train.epochs"),
    "in a variant": ("    kind: logreg\n", "    kind: cnn\n", "variants.logreg.kind"),
}


@pytest.mark.parametrize("where", sorted(DUPLICATES))
def test_a_key_given_twice_is_refused_naming_it_both_lines_and_the_file(tmp_path, capsys, where):
    """PyYAML keeps the last of two equal keys without a word; DVC refuses the file. So do params.load (every
    stage) and `skinlesion validate`: one line with the dotted key, its two line numbers and the file."""
    from skinlesion import cli

    anchor, again, key = DUPLICATES[where]
    text = (REPO / "params.yaml").read_text()
    first = text[:text.index(anchor)].count("\n") + 1
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(anchor, anchor + again, 1))
    second = first + 1
    with pytest.raises(PipelineError) as err:
        P.load(path)
    assert f"duplicate key '{key}' at lines {first} and {second}" in str(err.value) and str(path) in str(err.value)
    assert cli.main(["validate", "--params", str(path)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert out == [f"skinlesion validate: error: {err.value}"]


def test_yaml_merge_keys_are_not_duplicates():
    text = "base: &b {epochs: 5, patience: 2}\nuse:\n  <<: *b\n  epochs: 9\nseq: [{a: 1}, {a: 2}]\n"
    assert P.load_yaml(text) == {"base": {"epochs": 5, "patience": 2}, "use": {"epochs": 9, "patience": 2},
                                 "seq": [{"a": 1}, {"a": 2}]}
    with pytest.raises(P.DuplicateKeyError, match=r"'seq.1.a' at line 1;"):
        P.load_yaml("seq: [{a: 1}, {a: 2, a: 3}]\n")


BAD_LAYERS = {  # variant -> what the one error line must say
    "unfreeze_name": ({"freeze": False, "fine_tune": {"unfreeze_from": "no_such_layer"}},
                      ["variant v: fine_tune.unfreeze_from: mobilenet_v2 has no layer named 'no_such_layer'",
                       "block_13_expand", "or top"]),
    "unfreeze_typo": ({"freeze": False, "fine_tune": {"unfreeze_from": "block_13_expnd"}},
                      ["no layer named 'block_13_expnd'", "e.g. block_13_expand"]),
    "unfreeze_index": ({"freeze": False, "fine_tune": {"unfreeze_from": 154}},
                       ["fine_tune.unfreeze_from: 154 is outside mobilenet_v2's 154 layers", "-154..153"]),
    "pool_from_name": ({"pool_from": ["block_6_expand_relu", "block_99"]},
                       ["variant v: pool_from: mobilenet_v2 has no layer named 'block_99'"]),
    "pool_from_output": ({"pool_from": ["out_relu"]}, ["'out_relu' is mobilenet_v2's own output"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_validate_checks_the_layer_names_a_variant_gives(tmp_path, capsys, monkeypatch, case):
    """unfreeze_from / pool_from naming no layer of the backbone used to pass validate and fail 11 s into
    training with a traceback: validate builds the architecture (random weights, nothing downloaded) and
    names the variant, the key, the value and some valid choices, in one line, exit 2."""
    from skinlesion import cli, weights

    settings, needles = BAD_LAYERS[case]
    params = copy.deepcopy(base_params())
    params["variants"] = {"v": {"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", **settings}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    monkeypatch.setattr(weights, "_download", lambda *a, **k: pytest.fail("tried to download weights"))
    assert cli.main(["validate", "--params", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"skinlesion validate: error: {path}: "), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_validate_accepts_real_layer_names_and_refuses_a_cnn_deeper_than_its_images(tmp_path, capsys):
    from skinlesion import cli

    params = copy.deepcopy(base_params())
    path = tmp_path / "params.yaml"
    params["variants"] = {"v": {"kind": "dual", "task": "binary", "backbone": "mobilenet_v2",
                                "pool_from": ["block_6_expand_relu"]},
                          "t": {"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "freeze": False,
                                "fine_tune": {"unfreeze_from": "top"}},
                          "c": {"kind": "cnn", "task": "binary", "filters": [8] * 7}}  # 128 px: 7 halvings fit
    path.write_text(yaml.safe_dump(params))
    assert cli.main(["validate", "--params", str(path)]) == 0
    assert "ok (3 variants" in capsys.readouterr().out
    params["variants"]["c"]["filters"] = [8] * 8
    path.write_text(yaml.safe_dump(params))
    assert cli.main(["validate", "--params", str(path)]) == 2
    assert ("variant c: filters: 8 conv blocks each halve the image, and images.size 128 allows at most 7"
            in capsys.readouterr().err)
