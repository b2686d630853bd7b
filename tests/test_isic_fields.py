"""Every field the archive has (issue 18, item 3): metadata.csv keeps every key, and the site is read from
anatom_site_1 or anatom_site_general (or the retired challenge spelling), whichever a record has."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import FakeIsic, client_options  # noqa: E402

from skinlesion import metadata  # noqa: E402
from skinlesion.sources.isic.download import download  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def test_the_site_is_taken_from_whichever_field_a_record_has():
    raw = pd.DataFrame({
        "isic_id": ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003", "ISIC_0000004", "ISIC_0000005", "ISIC_0000006"],
        "anatom_site_1": ["Upper extremity", "", "", "", "Trunk", ""],
        "anatom_site_general": ["lower extremity", "posterior torso", "head/neck", "", "", "palms/soles"],
        "anatom_site_general_challenge": ["", "", "", "lower extremity", "", ""],
    }, dtype="string")
    sites = metadata.typed(raw)["anatom_site_1"].tolist()
    assert sites == ["Upper extremity", "Trunk", "Head and neck", "Lower extremity", "Trunk", pd.NA]
    # no site field at all: missing everywhere, not an error
    assert metadata.typed(raw[["isic_id"]])["anatom_site_1"].isna().all()


def test_the_site_table_matches_the_local_sources():
    from skinlesion.sources.local.vocabulary import SITE_GENERAL

    assert metadata.SITE_FROM_GENERAL == SITE_GENERAL


def test_metadata_csv_keeps_every_acquisition_and_clinical_key_and_the_site_survives(tmp_path):
    extra = {"anatom_site_2": "Anterior torso", "anatom_site_general": "anterior torso",
             "anatom_site_special": "umbilicus", "mel_thick_mm": 0.4, "nevus_type": "blue"}

    with FakeIsic(9) as server:
        def hook(record):
            record = json.loads(json.dumps(record))
            clinical = record["metadata"].setdefault("clinical", {})
            if int(record["isic_id"][5:]) % 2:  # every other record: only the older site field
                clinical.pop("anatom_site_1", None)
                clinical["anatom_site_general"] = "posterior torso"
            else:
                clinical.update(extra)
            record["metadata"]["acquisition"]["dermoscopic_type"] = "contact polarized"
            record["metadata"]["acquisition"]["tbp_tile_type"] = "3D: white"
            return record

        server.record_hook = hook
        out = tmp_path / "isic"
        download(client_options(server), out, progress=False)
        with open(out / "metadata.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        header = list(rows[0])
        assert header[:3] == ["isic_id", "attribution", "copyright_license"]
        assert set(extra) | {"dermoscopic_type", "tbp_tile_type", "pixels_x"} <= set(header)
        assert header[3:] == sorted(header[3:])
        table = metadata.typed(pd.read_csv(out / "metadata.csv", dtype=str, keep_default_na=False, na_values=[""]))
        by_id = dict(zip(table["isic_id"], table["anatom_site_1"]))
        for record in server.records:
            # odd: only anatom_site_general (posterior torso); even: anatom_site_1 where it has one, else
            # the anterior torso of anatom_site_general
            want = "Trunk" if int(record["isic_id"][5:]) % 2 else record["metadata"].get("clinical", {}).get("anatom_site_1", "Trunk")
            assert (by_id[record["isic_id"]] if by_id[record["isic_id"]] is not pd.NA else None) == want, record["isic_id"]


def test_the_site_table_agrees_with_the_archives_own_vocabulary():
    """metadata.SITE_FROM_GENERAL against isic-metadata (the archive's registry package; isic-cli, in the test
    extra, brings it): every older general site it maps is one the archive knows (or the retired challenge
    spelling "torso"), it maps onto a top level of anatom_site_1, and what it leaves out is said in docs."""
    from isic_metadata.anatom_site_hierarchical import AnatomSiteEnum
    from isic_metadata.fields import AnatomSiteGeneralEnum

    from skinlesion import metadata

    general = {e.value for e in AnatomSiteGeneralEnum}
    top = {e.value for e in AnatomSiteEnum if ":" not in e.value}
    assert set(metadata.SITE_FROM_GENERAL) - general == {"torso"}
    assert set(metadata.SITE_FROM_GENERAL.values()) <= top
    assert general - set(metadata.SITE_FROM_GENERAL) == {"palms/soles", "oral/genital"}  # docs/isic.md says why
