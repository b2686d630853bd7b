"""The local source: the three layouts, detection, the label mapping, mismatches, limit, real HAM10000."""

from __future__ import annotations

import csv
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinlesion import labels, raw_layout
from skinlesion.errors import PipelineError
from skinlesion.io import read_json
from skinlesion.sources import fetch as fetch_source
from skinlesion.sources import local
from skinlesion.sources.local import layouts, selection, vocabulary

HAM_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, quality=90)


def _csv(path: Path, rows: list[dict], columns: list[str], sep: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, delimiter=sep)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fetch(root: Path, out: Path, layout="auto", limit=None, seed=0) -> tuple[dict, pd.DataFrame]:
    summary = local.fetch({"path": str(root), "layout": layout, "limit": limit}, out, seed)
    return summary, raw_layout.read_metadata(out)


# ---------------------------------------------------------------------------------------------------
# fixtures: small folders in each layout, with real JPEGs

HAM_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
HAM_ROWS = [
    # lesion,        image,          dx,      dx_type,     age,    sex,       localization
    ("HAM_0000001", "ISIC_0000001", "nv", "follow_up", "45.0", "male", "back"),
    ("HAM_0000001", "ISIC_0000002", "nv", "follow_up", "45.0", "male", "back"),
    ("HAM_0000002", "ISIC_0000003", "bkl", "histo", "80.0", "female", "scalp"),
    ("HAM_0000003", "ISIC_0000004", "df", "consensus", "35.0", "female", "lower extremity"),
    ("HAM_0000004", "ISIC_0000005", "vasc", "consensus", "", "unknown", "unknown"),
    ("HAM_0000005", "ISIC_0000006", "mel", "histo", "70.0", "male", "acral"),
    ("HAM_0000006", "ISIC_0000007", "bcc", "histo", "90.0", "male", "face"),
    ("HAM_0000007", "ISIC_0000008", "akiec", "confocal", "65.0", "female", "genital"),
    ("HAM_0000008", "ISIC_0000009", "mel", "histo", "60.0", "female", "upper extremity"),  # no image
]


@pytest.fixture
def ham_dir(tmp_path):
    root = tmp_path / "ham"
    _csv(root / "HAM10000_metadata.csv", [dict(zip(HAM_COLUMNS, r)) for r in HAM_ROWS], HAM_COLUMNS)
    for k, row in enumerate(HAM_ROWS[:-1]):  # the original split over two folders
        part = "HAM10000_images_part_1" if k < 4 else "HAM10000_images_part_2"
        _jpeg(root / part / f"{row[1]}.jpg", k)
    _jpeg(root / "HAM10000_images_part_2" / "ISIC_0000099.jpg", 99)  # an image without a row
    return root


ISIC2020_COLUMNS = ["image_name", "patient_id", "lesion_id", "sex", "age_approx", "anatom_site_general_challenge",
                    "diagnosis", "benign_malignant", "target"]
ISIC2020_ROWS = [
    ("ISIC_2000001", "IP_0000001", "IL_0000001", "male", "45.0", "torso", "nevus", "benign", "0"),
    ("ISIC_2000002", "IP_0000001", "IL_0000002", "male", "45.0", "head/neck", "melanoma", "malignant", "1"),
    ("ISIC_2000003", "IP_0000002", "IL_0000003", "female", "", "palms/soles", "unknown", "benign", "0"),
    ("ISIC_2000004", "IP_0000003", "IL_0000004", "", "55.0", "oral/genital", "seborrheic keratosis", "benign", "0"),
    ("ISIC_2000005", "IP_0000004", "IL_0000005", "female", "60.0", "lower extremity", "melanoma", "", "1"),
    ("ISIC_2000006", "IP_0000005", "IL_0000006", "male", "30.0", "upper extremity",
     "atypical melanocytic proliferation", "benign", "0"),
    ("ISIC_2000007", "IP_0000006", "IL_0000007", "male", "75.0", "", "basal cell carcinoma", "malignant", "1"),
    ("ISIC_2000008", "IP_0000007", "IL_0000008", "female", "50.0", "torso", "nevus", "indeterminate", ""),
]


@pytest.fixture
def isic2020_dir(tmp_path):
    root = tmp_path / "isic2020"
    _csv(root / "ISIC_2020_Training_GroundTruth_v2.csv", [dict(zip(ISIC2020_COLUMNS, r)) for r in ISIC2020_ROWS],
         ISIC2020_COLUMNS)
    for k, row in enumerate(ISIC2020_ROWS):
        _jpeg(root / "jpeg" / "train" / f"{row[0]}.jpg", k)
    _jpeg(root / "jpeg" / "test" / "ISIC_9999999.jpg", 5)  # test images: not part of the training CSV
    return root


CLI_COLUMNS = ["isic_id", "attribution", "copyright_license", "age_approx", "anatom_site_1", "diagnosis_1",
               "diagnosis_2", "diagnosis_3", "image_type", "lesion_id", "patient_id", "sex"]


@pytest.fixture
def cli_dir(tmp_path):
    root = tmp_path / "cli"
    rows = [
        {"isic_id": "ISIC_1000001", "attribution": "Hospital A", "copyright_license": "CC-BY", "age_approx": "40",
         "anatom_site_1": "Trunk", "diagnosis_1": "Benign", "diagnosis_2": "Benign melanocytic proliferations",
         "diagnosis_3": "Nevus", "image_type": "dermoscopic", "lesion_id": "IL_1", "patient_id": "IP_1",
         "sex": "female"},
        {"isic_id": "ISIC_1000002", "attribution": "Hospital B", "copyright_license": "CC-0", "age_approx": "70",
         "diagnosis_1": "Malignant", "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)",
         "diagnosis_3": "Melanoma metastasis", "lesion_id": "IL_2", "patient_id": "IP_2", "sex": "male"},
        {"isic_id": "ISIC_1000003", "attribution": "Hospital B", "copyright_license": "CC-0",
         "diagnosis_1": "Indeterminate", "lesion_id": "IL_3", "patient_id": "IP_2"},
        {"isic_id": "ISIC_1000004", "attribution": "Hospital A", "copyright_license": "CC-BY",
         "diagnosis_1": "Benign", "patient_id": "IP_3"},  # no image
    ]
    _csv(root / "metadata.csv", rows, CLI_COLUMNS)
    _jpeg(root / "images" / "ISIC_1000001.jpg", 1)
    _jpeg(root / "images" / "ISIC_1000002.JPEG", 2)
    Image.new("RGB", (8, 8), "red").save(root / "images" / "ISIC_1000003.png")
    _jpeg(root / "images" / "ISIC_1000005.jpg", 5)  # no row
    (root / "attribution.txt").write_text("Hospital A\nHospital B\n")
    (root / "licenses").mkdir()
    (root / "licenses" / "CC-BY.txt").write_text("the archive's own CC-BY text\n")
    return root


# ---------------------------------------------------------------------------------------------------
# the three layouts


def test_ham10000_layout_mapping(ham_dir, tmp_path, caplog):
    before = _snapshot(ham_dir)
    with caplog.at_level(logging.WARNING, logger="skinlesion.sources.local"):
        summary, meta = _fetch(ham_dir, tmp_path / "out")
    assert summary["layout"] == "ham10000"
    assert summary["rows"] == 9 and summary["images_found"] == 9
    assert summary["rows_without_image"] == 1 and summary["images_without_row"] == 1
    assert "ISIC_0000009" in caplog.text and "ISIC_0000099" in caplog.text
    assert summary["kept_images"] == 8 and len(meta) == 8
    assert summary["unmapped"]["localization"] == {"unknown": 1, "acral": 1}
    assert summary["unmapped"]["sex"] == {"unknown": 1}

    m = meta.set_index("isic_id").fillna("")
    expected = {  # image: (diagnosis_1, diagnosis_2, diagnosis_3)
        "ISIC_0000001": ("Benign", "Benign melanocytic proliferations", "Nevus"),
        "ISIC_0000003": ("Benign", "Benign epidermal proliferations", "Pigmented benign keratosis"),
        "ISIC_0000004": ("Benign", "Benign soft tissue proliferations - Fibro-histiocytic", "Dermatofibroma"),
        "ISIC_0000005": ("Benign", "Benign soft tissue proliferations - Vascular", ""),
        "ISIC_0000006": ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma, NOS"),
        "ISIC_0000007": ("Malignant", "Malignant adnexal epithelial proliferations - Follicular",
                         "Basal cell carcinoma"),
        "ISIC_0000008": ("Malignant", "Malignant epidermal proliferations", "Squamous cell carcinoma in situ"),
    }
    for isic_id, (d1, d2, d3) in expected.items():
        assert m.loc[isic_id, ["diagnosis_1", "diagnosis_2", "diagnosis_3"]].tolist() == [d1, d2, d3], isic_id
    assert m.loc["ISIC_0000001", "lesion_id"] == "HAM_0000001" and "patient_id" not in meta.columns
    assert m["age_approx"].tolist() == ["45", "45", "80", "35", "", "70", "85", "65"]  # 90 capped at 85
    assert m["sex"].tolist() == ["male", "male", "female", "female", "", "male", "male", "female"]
    assert m["anatom_site_1"].tolist() == [
        "Trunk", "Trunk", "Head and neck", "Lower extremity", "", "", "Head and neck", "Anogenital region"]
    assert m.loc["ISIC_0000008", "diagnosis_confirm_type"] == "confocal microscopy with consensus dermoscopy"
    assert m.loc["ISIC_0000001", "diagnosis_confirm_type"] == "serial imaging showing no change"
    assert set(m["attribution"]) == {"ViDIR Group, Medical University of Vienna"}
    assert set(m["copyright_license"]) == {"CC-BY-NC"}
    assert (tmp_path / "out" / "attribution.txt").read_text() == "ViDIR Group, Medical University of Vienna"
    assert [p.name for p in (tmp_path / "out" / "licenses").iterdir()] == ["CC-BY-NC.txt"]

    # through the labels module: akiec counts malignant and squamous, vasc benign
    binary = labels.binary_label(meta["diagnosis_1"]).tolist()
    multi = labels.multiclass_label(meta["diagnosis_1"], meta["diagnosis_3"]).map(dict(enumerate(labels.CLASSES)))
    assert binary == [0, 0, 0, 0, 0, 1, 1, 1]
    assert multi.tolist() == ["benign"] * 5 + ["melanoma", "basal_cell_carcinoma", "squamous_cell_carcinoma"]

    # images: hard links (same file) or byte copies under <isic_id>.jpg; the source is untouched
    images = raw_layout.image_files(tmp_path / "out")
    assert set(images) == set(meta["isic_id"])
    src = ham_dir / "HAM10000_images_part_2" / "ISIC_0000006.jpg"
    copy = Path(images["ISIC_0000006"].path)
    assert copy.read_bytes() == src.read_bytes()
    assert os.path.samefile(copy, src) or copy.stat().st_nlink == 1
    assert _snapshot(ham_dir) == before


def test_ham10000_dx_table_covers_all_seven_codes():
    assert set(vocabulary.HAM_DX) == {"nv", "bkl", "df", "vasc", "mel", "bcc", "akiec"}
    malignant = {dx for dx, (d1, *_rest) in vocabulary.HAM_DX.items() if d1 == "Malignant"}
    assert malignant == {"mel", "bcc", "akiec"}
    for d1, _d2, d3, _mel in vocabulary.HAM_DX.values():
        if d1 == "Malignant":
            assert d3 in labels.MALIGNANT_DIAGNOSIS_3  # every malignant code lands in a study class


def test_ham10000_images_folder_and_tab_metadata(tmp_path):
    root = tmp_path / "ham"
    _csv(root / "HAM10000_metadata.tab", [dict(zip(HAM_COLUMNS, r)) for r in HAM_ROWS[:3]], HAM_COLUMNS, sep="\t")
    for k, row in enumerate(HAM_ROWS[:3]):
        _jpeg(root / "images" / f"{row[1]}.jpg", k)
    summary, meta = _fetch(root, tmp_path / "out")
    assert summary["layout"] == "ham10000" and len(meta) == 3
    assert meta["diagnosis_3"].tolist() == ["Nevus", "Nevus", "Pigmented benign keratosis"]


def test_isic2020_layout_mapping(isic2020_dir, tmp_path):
    summary, meta = _fetch(isic2020_dir, tmp_path / "out")
    assert summary["layout"] == "isic2020"
    assert summary["rows"] == 8 and summary["kept_images"] == 8
    assert summary["images_without_row"] == 0  # jpeg/test is not read for the training CSV
    assert not set(vocabulary.RETIRED) & set(meta.columns)
    m = meta.set_index("isic_id").fillna("")
    assert m["diagnosis_1"].tolist() == ["Benign", "Malignant", "Benign", "Benign", "Malignant", "Benign",
                                         "Malignant", "Indeterminate"]
    assert m["diagnosis_3"].tolist() == ["Nevus", "Melanoma, NOS", "", "Seborrheic keratosis", "Melanoma, NOS",
                                         "", "Basal cell carcinoma", ""]
    # disagreeing flat diagnosis (atypical melanocytic proliferation / benign) is counted and not used
    assert summary["unmapped"]["diagnosis disagrees with benign_malignant"] == {
        "atypical melanocytic proliferation / benign": 1, "nevus / indeterminate": 1}
    assert m["anatom_site_1"].tolist() == ["Trunk", "Head and neck", "", "", "Lower extremity", "Upper extremity",
                                           "", "Trunk"]
    assert m["age_approx"].tolist() == ["45", "45", "", "55", "60", "30", "75", "50"]
    assert m["patient_id"].tolist()[:2] == ["IP_0000001", "IP_0000001"]
    assert m.loc["ISIC_2000004", "sex"] == ""
    assert set(m["copyright_license"]) == {"CC-BY-NC"}
    multi = labels.multiclass_label(meta["diagnosis_1"], meta["diagnosis_3"]).map(dict(enumerate(labels.CLASSES)))
    assert multi.fillna("-").tolist() == ["benign", "melanoma", "benign", "benign", "melanoma", "benign",
                                          "basal_cell_carcinoma", "-"]


def test_isic_cli_layout_passes_through(cli_dir, tmp_path):
    before = _snapshot(cli_dir)
    summary, meta = _fetch(cli_dir, tmp_path / "out")
    out = tmp_path / "out"
    assert summary["layout"] == "isic-cli"
    assert summary["rows_without_image"] == 1 and summary["images_without_row"] == 1
    assert meta["isic_id"].tolist() == ["ISIC_1000001", "ISIC_1000002", "ISIC_1000003"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "ISIC_1000001.jpg", "ISIC_1000002.jpg", "ISIC_1000003.png"]
    assert meta.loc[1, "diagnosis_3"] == "Melanoma metastasis"
    assert labels.multiclass_label(meta["diagnosis_1"], meta["diagnosis_3"]).tolist()[:2] == [0, 3]
    assert (out / "attribution.txt").read_text() == "Hospital A\nHospital B\n"
    assert (out / "licenses" / "CC-BY.txt").read_text() == "the archive's own CC-BY text\n"
    assert (out / "licenses" / "CC-0.txt").exists()  # a license in use without a text: the built-in one
    assert _snapshot(cli_dir) == before


def test_isic_cli_flat_folder_reads_as_the_images_subfolder_variant(cli_dir, tmp_path):
    """isic-cli writes the images flat in its OUTDIR, beside metadata.csv (isic_cli/cli/image.py); the sets in
    ../shared keep them in images/. Both read to the same data/raw, byte for byte."""
    flat = tmp_path / "flat"
    shutil.copytree(cli_dir, flat)
    for image in sorted((flat / "images").iterdir()):
        image.rename(flat / image.name)
    (flat / "images").rmdir()
    summary, meta = _fetch(flat, tmp_path / "from_flat")
    nested_summary, nested_meta = _fetch(cli_dir, tmp_path / "from_images")
    assert summary["layout"] == "isic-cli" and summary["images_without_row"] == 1
    pd.testing.assert_frame_equal(meta, nested_meta)
    assert sorted(p.name for p in (tmp_path / "from_flat" / "images").iterdir()) == [
        "ISIC_1000001.jpg", "ISIC_1000002.jpg", "ISIC_1000003.png"]
    for name in ("metadata.csv", "attribution.txt", "licenses/CC-BY.txt"):
        assert (tmp_path / "from_flat" / name).read_bytes() == (tmp_path / "from_images" / name).read_bytes()
    for image in (tmp_path / "from_images" / "images").iterdir():
        assert (tmp_path / "from_flat" / "images" / image.name).read_bytes() == image.read_bytes()


def test_isic_cli_export_with_retired_fields_is_normalised(tmp_path):
    root = tmp_path / "old"
    rows = [{"isic_id": "ISIC_0000001", "benign_malignant": "malignant", "diagnosis": "basal cell carcinoma",
             "anatom_site_general": "anterior torso", "age_approx": "61"},
            {"isic_id": "ISIC_0000002", "benign_malignant": "indeterminate/benign", "diagnosis": "nevus"}]
    _csv(root / "metadata.csv", rows, ["isic_id", "benign_malignant", "diagnosis", "anatom_site_general",
                                       "age_approx"])
    _jpeg(root / "ISIC_0000001.jpg", 1)  # isic-cli puts images beside metadata.csv when no images/ exists
    _jpeg(root / "ISIC_0000002.jpg", 2)
    summary, meta = _fetch(root, tmp_path / "out")
    assert summary["layout"] == "isic-cli"
    assert meta["diagnosis_1"].tolist() == ["Malignant", "Indeterminate"]
    assert meta["diagnosis_3"].tolist()[0] == "Basal cell carcinoma"
    assert meta["anatom_site_1"].tolist()[0] == "Trunk"
    assert meta["age_approx"].tolist()[0] == "60"
    assert "benign_malignant" not in meta.columns


# ---------------------------------------------------------------------------------------------------
# detection and errors


def test_auto_detection(ham_dir, isic2020_dir, cli_dir):
    assert layouts.detect(ham_dir) == "ham10000"
    assert layouts.detect(isic2020_dir) == "isic2020"
    assert layouts.detect(cli_dir) == "isic-cli"


def test_unknown_layout_lists_the_three(tmp_path):
    root = tmp_path / "stuff"
    _csv(root / "labels.csv", [{"file": "a.jpg", "label": "1"}], ["file", "label"])
    with pytest.raises(PipelineError) as err:
        _fetch(root, tmp_path / "out")
    message = str(err.value)
    for layout in ("isic-cli", "ham10000", "isic2020"):
        assert layout in message
    assert "labels.csv" in message and not (tmp_path / "out").exists()


def test_missing_folder_and_wrong_explicit_layout(tmp_path, ham_dir):
    with pytest.raises(PipelineError, match="data.local.path"):
        _fetch(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(PipelineError, match="isic-cli"):
        _fetch(ham_dir, tmp_path / "out", layout="isic-cli")
    with pytest.raises(PipelineError, match="image_name"):
        _fetch(ham_dir, tmp_path / "out", layout="isic2020")


def test_no_row_matches_an_image_is_an_error(tmp_path):
    root = tmp_path / "ham"
    _csv(root / "HAM10000_metadata.csv", [dict(zip(HAM_COLUMNS, HAM_ROWS[0]))], HAM_COLUMNS)
    _jpeg(root / "images" / "ISIC_7777777.jpg", 0)
    with pytest.raises(PipelineError, match="no metadata row"):
        _fetch(root, tmp_path / "out")


def test_through_the_source_entry_point(ham_dir, tmp_path):
    params = {"seed": 1, "data": {"source": "local", "local": {"path": str(ham_dir), "layout": "auto",
                                                                "limit": None}}}
    fetch_source(params, tmp_path / "raw")
    info = read_json(tmp_path / "raw" / "source.json")
    assert info["source"] == "local" and info["layout"] == "ham10000"
    assert info["images"] == 8 and info["rows_without_image"] == 1


# ---------------------------------------------------------------------------------------------------
# the folder is read, not followed: no symbolic link below data.local.path brings an outside byte in


@pytest.fixture
def outside(tmp_path):
    """A file outside every dataset folder (think /etc/passwd, ~/.ssh/id_rsa), and its telltale bytes."""
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(b"root:x:0:0:OUTSIDE-SECRET-7f3a9c:/root:/bin/bash\n" * 40)
    return path


def _local_params(root: Path, layout="auto") -> dict:
    return {"seed": 0, "data": {"source": "local", "local": {"path": str(root), "layout": layout, "limit": None}}}


def _holds_nothing_of(out: Path, outside: Path) -> None:
    """No link anywhere in out, and no file of out holding the outside file's bytes (packs included)."""
    marker = outside.read_bytes()[:48]
    for folder, dirs, files in os.walk(out):
        for name in dirs + files:
            path = Path(folder) / name
            assert not path.is_symlink(), path
            assert path.is_dir() or marker not in path.read_bytes(), path


@pytest.mark.parametrize("layout", ["isic-cli", "ham10000"])
def test_an_image_linked_outside_never_reaches_data_raw(layout, cli_dir, ham_dir, outside, tmp_path, caplog):
    root = cli_dir if layout == "isic-cli" else ham_dir
    image = (root / "images" / "ISIC_1000001.jpg" if layout == "isic-cli"
             else root / "HAM10000_images_part_1" / "ISIC_0000003.jpg")
    image.unlink()
    image.symlink_to(outside)
    before = _snapshot(root)
    out = tmp_path / "raw"
    with caplog.at_level(logging.WARNING, logger="skinlesion.sources.local"):
        fetch_source(_local_params(root), out)  # the fetch stage: the local source, then the packs
    _holds_nothing_of(out, outside)
    info = read_json(out / "source.json")
    assert info["skipped"] == {"image is a symbolic link": 1} and info["links_not_followed"] == 1
    assert image.stem not in set(pd.read_csv(out / "metadata.csv")["isic_id"])
    assert info["rows_without_image"] == 1  # the row that had none before; the linked one is counted apart
    assert "1 row(s) skipped: their image is a symbolic link" in caplog.text and str(image) in caplog.text
    assert _snapshot(root) == before and image.is_symlink()  # the dataset folder is only read


def test_linked_attribution_and_licenses_are_not_carried_over(cli_dir, outside, tmp_path, caplog):
    license_file = cli_dir / "licenses" / "CC-BY.txt"
    license_file.unlink()
    license_file.symlink_to(outside)
    (cli_dir / "attribution.txt").unlink()
    (cli_dir / "attribution.txt").symlink_to(outside)
    out = tmp_path / "raw"
    with caplog.at_level(logging.WARNING, logger="skinlesion.sources.local"):
        fetch_source(_local_params(cli_dir), out)
    _holds_nothing_of(out, outside)
    assert (out / "licenses" / "CC-BY.txt").read_text() == raw_layout.LICENSE_TEXTS["CC-BY"]  # the built-in text
    assert (out / "attribution.txt").read_text() == "Hospital B\n\nHospital A"  # from the rows, as isic-cli
    assert read_json(out / "source.json")["links_not_followed"] == 2
    assert "2 symbolic link(s)" in caplog.text and "not followed" in caplog.text
    # licenses/ itself a link to an outside folder: not read either
    shutil.rmtree(cli_dir / "licenses")
    (cli_dir / "licenses").symlink_to(outside.parent)
    (outside.parent / "CC-BY.txt").write_bytes(outside.read_bytes())
    fetch_source(_local_params(cli_dir), tmp_path / "raw2")
    _holds_nothing_of(tmp_path / "raw2", outside)
    assert read_json(tmp_path / "raw2" / "source.json")["links_not_followed"] == 2


@pytest.mark.parametrize("linked", ["metadata.csv", "images", "HAM10000_metadata.csv", "HAM10000_images_part_2"])
def test_a_linked_metadata_file_or_image_folder_is_refused_in_one_line(linked, cli_dir, ham_dir, outside, tmp_path):
    root = cli_dir if linked in ("metadata.csv", "images") else ham_dir
    target = tmp_path / "moved" / linked
    target.parent.mkdir()
    (root / linked).rename(target)
    (root / linked).symlink_to(target)
    for layout in ("auto", "isic-cli" if root is cli_dir else "ham10000"):
        with pytest.raises(PipelineError) as caught:
            fetch_source(_local_params(root, layout), tmp_path / "raw")
        message = str(caught.value)
        assert "\n" not in message and f"{root / linked} is a symbolic link (to {target})" in message, message
        assert "follows no link" in message and "in place of the link" in message
        assert not (tmp_path / "raw").exists() and not list(tmp_path.glob(".raw.*"))  # nothing half-written


def test_a_link_among_the_images_is_never_read_even_inside_the_folder(cli_dir, tmp_path):
    """Inside or outside, a link is not followed: only regular files are carried over."""
    link = cli_dir / "images" / "ISIC_1000005.jpg"  # the image without a row, now a link to a real image
    link.unlink()
    link.symlink_to(cli_dir / "images" / "ISIC_1000001.jpg")
    os.mkfifo(cli_dir / "images" / "ISIC_1000006.jpg")  # named like an image: skipped, never opened (it would block)
    summary, meta = _fetch(cli_dir, tmp_path / "out")
    assert summary["links_not_followed"] == 1 and summary["images_found"] == 3
    assert not any(p.is_symlink() for p in (tmp_path / "out" / "images").iterdir())


def test_a_file_swapped_for_a_link_while_the_fetch_runs_is_refused(cli_dir, outside, tmp_path, monkeypatch):
    """The index saw a regular file; by the time it is hard-linked it is a link: refused, never carried in."""
    from skinlesion.sources.local import writer

    real = writer._place

    def swap_then_place(root, src, dst):
        if src.name == "ISIC_1000001.jpg":
            src.unlink()
            src.symlink_to(outside)
        return real(root, src, dst)

    monkeypatch.setattr(writer, "_place", swap_then_place)
    with pytest.raises(PipelineError, match="ISIC_1000001.jpg is a symbolic link"):
        fetch_source(_local_params(cli_dir), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


# ---------------------------------------------------------------------------------------------------
# limit: whole groups, deterministic, stratified


@pytest.fixture
def many_lesions(tmp_path):
    """120 HAM-style lesions, 1-4 images each, about 20 % malignant."""
    rng = np.random.default_rng(0)
    root, rows, k = tmp_path / "many", [], 0
    for lesion in range(120):
        dx = "mel" if lesion % 5 == 0 else "nv"
        for _ in range(int(rng.integers(1, 5))):
            k += 1
            rows.append({"lesion_id": f"HAM_{lesion:07d}", "image_id": f"ISIC_{k:07d}", "dx": dx,
                         "dx_type": "histo", "age": "50.0", "sex": "male", "localization": "back"})
            _jpeg(root / "images" / f"ISIC_{k:07d}.jpg", k)
    _csv(root / "HAM10000_metadata.csv", rows, HAM_COLUMNS)
    return root, pd.DataFrame(rows)


def test_limit_keeps_whole_lesions_deterministically(many_lesions, tmp_path):
    root, source = many_lesions
    _, a = _fetch(root, tmp_path / "a", limit=100, seed=1)
    _, b = _fetch(root, tmp_path / "b", limit=100, seed=1)
    _, c = _fetch(root, tmp_path / "c", limit=100, seed=2)
    assert 90 <= len(a) <= 100
    assert a["isic_id"].tolist() == b["isic_id"].tolist()
    assert (tmp_path / "a" / "metadata.csv").read_bytes() == (tmp_path / "b" / "metadata.csv").read_bytes()
    assert a["isic_id"].tolist() != c["isic_id"].tolist()
    sizes = source.groupby("lesion_id").size()
    for frame in (a, c):
        kept = frame.groupby("lesion_id").size()
        assert (kept == sizes[kept.index]).all()  # every kept lesion with all its images
        share = (frame["diagnosis_1"] == "Malignant").mean()
        assert abs(share - (source["dx"] == "mel").mean()) < 0.05
    assert sorted(p.stem for p in (tmp_path / "a" / "images").iterdir()) == sorted(a["isic_id"])


def test_limit_groups_by_patient_and_lesion_together():
    records = [
        {"isic_id": "ISIC_1", "patient_id": "IP_1", "lesion_id": "IL_1", "diagnosis_1": "Benign"},
        {"isic_id": "ISIC_2", "lesion_id": "IL_1", "diagnosis_1": "Benign"},            # same lesion, no patient
        {"isic_id": "ISIC_3", "patient_id": "IP_1", "lesion_id": "IL_2", "diagnosis_1": "Malignant"},
        {"isic_id": "ISIC_4", "patient_id": "IP_2", "diagnosis_1": "Benign"},
        {"isic_id": "ISIC_5", "diagnosis_1": "Benign"},
    ]
    groups = sorted(sorted(records[i]["isic_id"] for i in g) for g in selection.groups_of(records).values())
    assert groups == [["ISIC_1", "ISIC_2", "ISIC_3"], ["ISIC_4"], ["ISIC_5"]]
    for seed in range(5):
        kept = {r["isic_id"] for r in selection.select(records, 3, seed)}
        assert len(kept) <= 3
        assert {"ISIC_1", "ISIC_2", "ISIC_3"} <= kept or not kept & {"ISIC_1", "ISIC_2", "ISIC_3"}
    assert selection.select(records, 10, 0) == records


# ---------------------------------------------------------------------------------------------------
# the real HAM10000 copy


@pytest.mark.realdata
@pytest.mark.skipif(not (HAM_REAL / "HAM10000_metadata.csv").exists(), reason="../shared/data/ham10000 absent")
def test_real_ham10000_with_limit(tmp_path):
    summary, meta = _fetch(HAM_REAL, tmp_path / "out", limit=300, seed=42)
    assert summary["layout"] == "ham10000"
    assert summary["rows"] == 10015 and summary["rows_without_image"] == 0
    assert 280 <= len(meta) <= 300
    source = pd.read_csv(HAM_REAL / "HAM10000_metadata.csv", dtype=str)
    sizes = source.groupby("lesion_id").size()
    kept = meta.groupby("lesion_id").size()
    assert (kept == sizes[kept.index]).all()
    share = (meta["diagnosis_1"] == "Malignant").mean()
    assert abs(share - 1954 / 10015) < 0.03
    binary = labels.binary_label(meta["diagnosis_1"])
    multi = labels.multiclass_label(meta["diagnosis_1"], meta["diagnosis_3"]).map(dict(enumerate(labels.CLASSES)))
    assert binary.notna().all() and multi.notna().all()
    assert {"benign", "melanoma", "basal_cell_carcinoma", "squamous_cell_carcinoma"} <= set(multi)
    dx = source.set_index("image_id").loc[meta["isic_id"], "dx"].to_numpy()
    assert (binary.to_numpy() == np.isin(dx, ["mel", "bcc", "akiec"])).all()
    assert set(meta["sex"].dropna()) <= {"male", "female"}
    assert set(meta["anatom_site_1"].dropna()) <= set(vocabulary.SITES_1)
    images = raw_layout.image_files(tmp_path / "out")
    assert set(images) == set(meta["isic_id"])
    with Image.open(images[meta["isic_id"].iloc[0]].fp()) as im:
        assert im.size == (200, 150)


def test_attribution_txt_is_isic_clis():
    """isic-cli's attribution.txt (../shared/isic-api.md): each attribution once, most images first, ties by
    name, "Anonymous" last whatever its count, one blank line between, no newline at the end."""
    rows = ([{"attribution": "Anonymous"}] * 5 + [{"attribution": "Clinic B"}] * 2 + [{"attribution": "Clinic A"}] * 2
            + [{"attribution": "Big Hospital"}] * 3 + [{"attribution": ""}, {}])
    assert raw_layout.attribution_text(rows) == "Big Hospital\n\nClinic A\n\nClinic B\n\nAnonymous"
    assert raw_layout.attribution_text([]) == ""
