"""params.yaml stays as written through `dvc exp run -S` (issue 21 item 4).

DVC applies `-S key=value` with dvc.utils.hydra.apply_overrides, which rewrites the whole file through
ruamel.yaml: flow lists become block lists, `null` becomes empty, `""` becomes `''`, long flow maps are
wrapped, and a comment after a block list that closes a mapping is dropped on the next pass. params.yaml
is written in the style that this rewrite leaves unchanged, so the comments stay next to their keys. These
tests run DVC's own function on a copy: setting any value changes only that value's line (its comment
kept), and setting it back gives the file byte for byte.
"""

from __future__ import annotations

import difflib
import shutil

import pytest
import yaml

from conftest import REPO

apply_overrides = pytest.importorskip("dvc.utils.hydra").apply_overrides
PARAMS = REPO / "params.yaml"


def _leaves(node, prefix=""):
    """(dotted key, value) of every scalar in the params (lists and maps are walked, list items skipped)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    elif not isinstance(node, list):
        yield prefix[:-1], node


def _other(value):
    """An override value of the same type as `value`, unlike it, in Hydra's syntax."""
    if isinstance(value, bool):
        return str(not value).lower()
    if isinstance(value, (int, float)):
        return str(value + 3)
    if value is None:
        return "7"
    return "changed_value"


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines that differ, position by position (difflib's matching is not minimal on a file of
    repeated lines); a changed line count shows as the whole tails."""
    old, new = before.splitlines(), after.splitlines()
    if len(old) != len(new):
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        return old[first:], new[first:]
    pairs = [(a, b) for a, b in zip(old, new) if a != b]
    return [a for a, _ in pairs], [b for _, b in pairs]


LEAVES = sorted(_leaves(yaml.safe_load(PARAMS.read_text())))


def test_the_walk_finds_the_keys_a_user_sets():
    keys = dict(LEAVES)
    assert {"evaluate.threshold", "train.epochs", "data.isic.limit", "variants.cnn.epochs",
            "variants.mobilenet_finetune_top.fine_tune.epochs"} <= set(keys)


@pytest.mark.parametrize("key,value", LEAVES, ids=[k for k, _ in LEAVES])
def test_setting_a_value_changes_only_its_line(tmp_path, key, value):
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS, path)
    before = path.read_text()
    apply_overrides(str(path), [f"{key}={_other(value)}"])
    after = path.read_text()
    gone, new = _changed_lines(before, after)
    assert len(gone) == 1 and len(new) == 1, f"-S {key} rewrote more than its line:\n" + "\n".join(
        difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1))
    leaf = key.split(".")[-1]
    assert f"{leaf}:" in gone[0].split("#")[0] and f"{leaf}:" in new[0].split("#")[0], (gone, new)  # a flow map's line too
    if "#" in gone[0]:
        assert new[0].split("#", 1)[1] == gone[0].split("#", 1)[1], f"{key}: its comment changed"
    assert yaml.safe_load(after) != yaml.safe_load(before)


@pytest.mark.parametrize("key,there,back", [
    ("evaluate.threshold", "sensitivity", "youden"),
    ("data.isic.limit", "5", "null"),
    ("data.synthetic.images_per_patient", "[2,4]", "[1,3]"),
    ("variants.mobilenet_finetune_top.fine_tune.epochs", "3", "10"),
])
def test_setting_a_value_back_gives_the_file_as_written(tmp_path, key, there, back):
    """What `dvc exp run -S` then another `-S` back (or `dvc exp apply` of the first) leave."""
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS, path)
    apply_overrides(str(path), [f"{key}={there}"])
    apply_overrides(str(path), [f"{key}={back}"])
    assert path.read_text() == PARAMS.read_text()
