"""The overlap guard (issue 20): an external set sharing images, lesions or patients with the internal data
stops evaluate with counts and examples, instead of being scored as new."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skinlesion import overlap
from skinlesion.dataset import Split
from skinlesion.errors import PipelineError


def _split(folder, ids, pixels, **columns) -> Split:
    folder.mkdir(parents=True)
    np.save(folder / "shard-00000.npy", np.asarray(pixels, dtype=np.uint8))
    table = pd.DataFrame({"isic_id": ids, "shard": 0, "row": range(len(ids)), **columns})
    return Split(table, folder)


def _images(seed, n):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3))


def test_no_overlap_passes(tmp_path):
    inside = _split(tmp_path / "in", ["ISIC_1", "ISIC_2"], _images(0, 2), lesion_id=["IL_1", "IL_2"])
    other = _split(tmp_path / "out", ["ISIC_3", "ISIC_4"], _images(1, 2), lesion_id=["IL_3", None])
    assert overlap.find([inside], other) == {}
    overlap.check([inside], other, "external set x", "fix it.")


def test_each_way_of_overlapping_is_found(tmp_path):
    ours = _images(0, 4)
    inside = [_split(tmp_path / "train", ["ISIC_1", "ISIC_2"], ours[:2], lesion_id=["IL_1", "IL_2"],
                     patient_id=["IP_1", ""]),
              _split(tmp_path / "test", ["ISIC_5", "ISIC_6"], ours[2:], lesion_id=[None, None], patient_id=["", ""])]
    theirs = _images(1, 5)
    theirs[3] = ours[3]  # the internal test image ISIC_6, renamed: found by its pixels
    other = _split(tmp_path / "ext", ["ISIC_1", "ISIC_7", "ISIC_8", "ISIC_9", "ISIC_10"], theirs,
                   lesion_id=["IL_9", "IL_2", "", None, None], patient_id=["", "", "IP_1", "", ""])
    found = overlap.find(inside, other)
    assert found == {"isic_id": ["ISIC_1"], "lesion_id": ["ISIC_7"], "patient_id": ["ISIC_8"], "pixels": ["ISIC_9"]}
    with pytest.raises(PipelineError) as err:
        overlap.check(inside, other, "external set ext", "remove them.")
    message = str(err.value)
    assert "external set ext overlaps" in message and "4 of its 5 images" in message
    assert "1 by isic_id (e.g. ISIC_1)" in message and "1 by pixels (e.g. ISIC_9)" in message
    assert message.endswith("remove them.") and "\n" not in message


def test_pixels_are_compared_only_at_one_shape(tmp_path):
    inside = _split(tmp_path / "in", ["ISIC_1"], _images(0, 1))
    other = _split(tmp_path / "out", ["ISIC_2"], np.zeros((1, 4, 4, 3)))
    assert overlap.find([inside], other) == {}


def test_ids_longer_than_a_bundle_keeps_are_recorded_hashed_and_still_matched():
    import pandas as pd

    from skinlesion import overlap
    from skinlesion.dataset import Split

    long_id = "P" * 100  # a local source's patient ids are not bounded; seen.json keeps 64 characters at most
    seen = overlap.record([Split(pd.DataFrame({"isic_id": ["ISIC_1"], "patient_id": [long_id]}))], with_pixels=False)
    assert all(len(v) <= 64 for v in seen["patient_id"]) and seen["patient_id"] != [long_id]
    other = Split(pd.DataFrame({"isic_id": ["ISIC_2", "ISIC_3"], "patient_id": [long_id, "P"]}))
    assert overlap.find_seen(seen, other, with_pixels=False) == {"patient_id": ["ISIC_2"]}
