"""data/raw's packed images (skinlesion.raw_packs): what the fetch stage writes, what reads it, what it refuses."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, base_params, records

from skinlesion import images, metadata, raw_layout, raw_packs, sources
from skinlesion.errors import PipelineError


def _tree(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def plain_and_packed(make_raw, tmp_path):
    """The same raw folder twice: as a source writes it (images/), and packed as the fetch stage leaves it."""
    rows = records(12)
    plain = make_raw(rows, name="plain")
    packed = make_raw(rows, name="packed")
    raw_packs.pack(packed, pack_images=5)
    return plain, packed, rows


def test_pack_moves_every_image_into_tar_packs_with_a_manifest(plain_and_packed, tmp_path):
    plain, packed, rows = plain_and_packed
    assert not (packed / "images").exists()
    packs = sorted(p.name for p in (packed / "packs").iterdir())
    assert packs == [f"images-{k:05d}.tar" for k in range(5)]  # 24 images, 5 a pack
    manifest = pd.read_csv(packed / "manifest.csv")
    assert manifest.columns.tolist() == raw_packs.MANIFEST_COLUMNS
    assert manifest["file"].tolist() == sorted(f"{r['isic_id']}.jpg" for r in rows)
    for _, row in manifest.iterrows():
        data = (plain / "images" / row["file"]).read_bytes()
        with open(packed / row["pack"], "rb") as fh:
            fh.seek(row["offset"])
            assert fh.read(row["size"]) == data
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
    # plain tar: extracting every pack inside the folder gives isic-cli's images/ back, byte for byte
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    for pack in packs:
        subprocess.run(["tar", "-xf", str(packed / "packs" / pack), "-C", str(extracted)], check=True)
    assert _tree(extracted / "images") == _tree(plain / "images")


def test_packs_are_the_same_bytes_every_time(make_raw):
    rows = records(6)
    first, second = make_raw(rows, name="a"), make_raw(rows, name="b")
    for folder in (first, second):
        raw_packs.pack(folder)
    assert _tree(first) == _tree(second)  # same images, same pack bytes: the same DVC hash
    with tarfile.open(first / "packs" / "images-00000.tar") as tar:
        member = tar.getmembers()[0]
    assert (member.mtime, member.uid, member.gid, member.uname, member.mode) == (0, 0, 0, "", 0o644)


def test_a_pack_rolls_over_at_its_byte_limit(make_raw):
    raw = make_raw(records(3), name="raw")
    raw_packs.pack(raw, pack_bytes=1)  # every image is over it: one image a pack, never an empty pack
    assert len(list((raw / "packs").iterdir())) == 6


def test_packed_and_plain_folders_give_the_same_table_and_shards(plain_and_packed, tmp_path):
    plain, packed, _ = plain_and_packed
    params = base_params()
    params["images"] = {"size": 32, "shard_size": 16, "workers": 2}
    out = {}
    for folder in (plain, packed):
        table = tmp_path / f"{folder.name}.parquet"
        metadata.run(folder, table, params)
        images.run(table, folder, tmp_path / f"{folder.name}-shards", params)
        out[folder.name] = (table.read_bytes(), _tree(tmp_path / f"{folder.name}-shards"))
    assert out["plain"] == out["packed"]
    assert set(raw_layout.image_files(packed)) == set(raw_layout.image_files(plain))


def test_a_pack_changed_behind_the_manifest_stops_the_images_stage(plain_and_packed, tmp_path):
    _, packed, _ = plain_and_packed
    params = base_params()
    params["images"] = {"size": 32, "shard_size": 16, "workers": 2}
    table = tmp_path / "metadata.parquet"
    metadata.run(packed, table, params)
    manifest = pd.read_csv(packed / "manifest.csv").set_index("file")
    kept = manifest.loc[pd.read_parquet(table)["image"]]
    name, entry = kept.index[-1], kept.iloc[-1]  # an image the stage decodes, in the last pack
    pack = packed / entry["pack"]
    data = bytearray(pack.read_bytes())
    data[entry["offset"] + 100] ^= 0xFF  # one byte inside that image
    pack.write_bytes(bytes(data))
    with pytest.raises(raw_packs.DamagedPack, match=f"{entry['pack']}:images/{name} is not the image"):
        images.run(table, packed, tmp_path / "shards", params)
    assert not (tmp_path / "shards").exists()  # nothing half-written
    pack.write_bytes(bytes(data[:entry["offset"] + 10]))  # cut short: the same one error
    with pytest.raises(raw_packs.DamagedPack, match="cut short"):
        images.run(table, packed, tmp_path / "shards", params)


@pytest.mark.parametrize("line", [
    "../../escape.jpg,packs/images-00000.tar,512,10,00",
    "ISIC_0000000.jpg,../elsewhere/x.tar,512,10,00",
    "ISIC_0000000.jpg,packs/images-00000.tar,-5,10,00",
    "ISIC_0000000.jpg,packs/images-00000.tar,many,10,00",
    "ISIC_0000000.jpg,packs/images-00000.tar,512",
])
def test_a_manifest_line_that_is_not_an_image_of_the_packs_is_refused(plain_and_packed, line):
    _, packed, _ = plain_and_packed
    with open(packed / "manifest.csv", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(PipelineError, match="manifest.csv line 26"):
        raw_layout.image_files(packed)


def test_the_fetch_stage_packs_whatever_the_source(tmp_path):
    params = base_params()
    params["data"]["synthetic"] = {**params["data"]["synthetic"], "n_patients": 20}
    out = tmp_path / "raw"
    sources.fetch(params, out)
    assert sorted(p.name for p in out.iterdir()) == ["attribution.txt", "licenses", "manifest.csv", "metadata.csv",
                                                     "packs", "source.json"]
    n = len(pd.read_csv(out / "manifest.csv"))
    assert n == pd.read_json(out / "source.json", typ="series")["images"] > 0


def test_unpack_gives_isic_cli_layout_back(plain_and_packed, tmp_path):
    plain, packed, _ = plain_and_packed
    dest = tmp_path / "unpacked"
    result = subprocess.run([str(BIN / "skinlesion"), "unpack", str(packed), str(dest)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert _tree(dest) == _tree(plain)  # images/, metadata.csv, attribution.txt, licenses/
    # a damaged pack: one line, exit 2, and the earlier unpacked folder is kept as it was
    pack = packed / "packs" / "images-00004.tar"
    pack.write_bytes(pack.read_bytes()[:700])
    again = subprocess.run([str(BIN / "skinlesion"), "unpack", str(packed), str(dest)], capture_output=True, text=True,
                           check=False)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "images-00004.tar" in again.stderr and "fetch again" in again.stderr
    assert _tree(dest) == _tree(plain)


def test_the_images_of_a_packed_folder_decode_like_the_files(plain_and_packed):
    plain, packed, _ = plain_and_packed
    name = sorted(raw_layout.image_files(plain))[3]
    ref = raw_layout.image_files(packed)[name]
    assert ref.packed and str(ref).endswith(f"images-00000.tar:images/{name}.jpg")
    assert np.array_equal(images.load_image(ref, 24), images.load_image(plain / "images" / f"{name}.jpg", 24))
