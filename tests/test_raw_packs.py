"""data/raw's packed images (skinlesion.raw_packs): what the fetch stage writes, what reads it, what it refuses."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, base_params, records
from skinlesion import images, metadata, prediction, raw_layout, raw_packs, sources
from skinlesion.errors import PipelineError


def _tree(folder, skip=()) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def _flat(tree: dict[str, str]) -> dict[str, str]:
    """A source's folder (images/<id>.jpg) as isic-cli lays it out: the images at the top."""
    return {k.removeprefix("images/"): v for k, v in tree.items()}


def _unpack(*args):
    return subprocess.run([str(BIN / "skinlesion"), "unpack", *map(str, args)], capture_output=True, text=True,
                          check=False)


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
    manifest = pd.read_csv(packed / "manifest.csv")
    assert manifest.columns.tolist() == raw_packs.MANIFEST_COLUMNS
    assert manifest["file"].tolist() == sorted(f"{r['isic_id']}.jpg" for r in rows)
    packs = sorted(p.name for p in (packed / "packs").iterdir())
    assert len(packs) > 1 and sorted(set(manifest["pack"])) == [f"packs/{p}" for p in packs]
    # each pack holds a run of consecutive names and is named after its first
    for pack, files in manifest.groupby("pack", sort=False)["file"]:
        assert pack == f"packs/{files.iloc[0].removesuffix('.jpg')}.tar"
    for _, row in manifest.iterrows():
        data = (plain / "images" / row["file"]).read_bytes()
        with open(packed / row["pack"], "rb") as fh:
            fh.seek(row["offset"])
            assert fh.read(row["size"]) == data
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
    # plain tar: extracting every pack in another folder gives isic-cli's images/ back, byte for byte
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
    with tarfile.open(next((first / "packs").iterdir())) as tar:
        member = tar.getmembers()[0]
    assert (member.mtime, member.uid, member.gid, member.uname, member.mode) == (0, 0, 0, "", 0o644)


def test_a_changed_selection_rewrites_only_the_packs_it_touches(make_raw):
    """Pack ends depend on the names, not on positions: one image less changes its own pack (or merges it
    with the next one when it ended a pack), never every later pack (which DVC would re-cache and re-push)."""
    rows = records(40)  # 80 images, about 10 a pack
    full, fewer = make_raw(rows, name="full"), make_raw(rows, name="fewer")
    gone = sorted(p.name for p in (fewer / "images").iterdir())[len(rows) // 2]
    (fewer / "images" / gone).unlink()
    for folder in (full, fewer):
        raw_packs.pack(folder, pack_images=10)
    a, b = _tree(full / "packs"), _tree(fewer / "packs")
    assert len(a) > 4
    changed = {name for name in a.keys() | b.keys() if a.get(name) != b.get(name)}
    assert 1 <= len(changed) <= 3, changed


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
    name, entry = kept.index[-1], kept.iloc[-1]  # an image the stage decodes
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
    "../../escape.jpg,packs/ISIC_0000000.tar,512,10,00",
    "ISIC_0000000.jpg,../elsewhere/x.tar,512,10,00",
    "ISIC_0000000.jpg,packs/ISIC_0000000.tar,-5,10,00",
    "ISIC_9999999.jpg,packs/ISIC_0000000.tar,700,10,00",  # not on a tar block
    "ISIC_9999999.jpg,packs/ISIC_0000000.tar,512,99999999999999,00",  # no image is that large
    "ISIC_0000000.jpg,packs/ISIC_0000000.tar,512,10,00",  # listed twice
    "ISIC_0000000.jpg,packs/ISIC_0000000.tar,many,10,00",
    "ISIC_0000000.jpg,packs/ISIC_0000000.tar,512",
    "ISIC_9999999.jpg,packs/ISIC_0000000.tar,512,10," + "0" * 200_000,  # past the csv module's field limit
])
def test_a_manifest_line_that_is_not_an_image_of_the_packs_is_refused(plain_and_packed, line):
    _, packed, _ = plain_and_packed
    with open(packed / "manifest.csv", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(PipelineError, match="manifest.csv line 26"):
        raw_layout.image_files(packed)


def test_a_manifest_that_is_not_utf8_is_one_error(plain_and_packed):
    _, packed, _ = plain_and_packed
    with open(packed / "manifest.csv", "ab") as fh:
        fh.write(b"ISIC_\xff\xfe.jpg,packs/ISIC_0000000.tar,512,10,00\n")
    with pytest.raises(PipelineError, match="cannot be read as the fetch's manifest"):
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
    result = _unpack(packed, dest)
    assert result.returncode == 0, result.stderr
    # isic-cli's flat folder: <id>.jpg, metadata.csv, attribution.txt, licenses/ (and source.json) at the top
    assert _tree(dest, skip=(raw_packs.UNPACKED,)) == _flat(_tree(plain))
    assert not (dest / "images").exists() and (dest / raw_packs.UNPACKED).is_file()
    assert _unpack(packed, dest).returncode == 0  # an earlier unpack is replaced
    # a damaged pack: one line, exit 2, and the earlier unpacked folder is kept as it was
    pack = next((packed / "packs").iterdir())
    pack.write_bytes(pack.read_bytes()[:700])
    again = _unpack(packed, dest)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert pack.name in again.stderr and "fetch again" in again.stderr
    assert _tree(dest, skip=(raw_packs.UNPACKED,)) == _flat(_tree(plain))


def test_unpack_never_replaces_the_raw_folder_nor_another_folder(plain_and_packed, tmp_path):
    plain, packed, _ = plain_and_packed
    before = _tree(packed)
    for dest in (packed, packed / "inside", tmp_path):
        result = _unpack(packed, dest)
        assert result.returncode == 2 and "unpack into a folder of its own" in result.stderr, dest
    mine = _unpack(packed, plain)  # a folder unpack did not write (no unpacked.json)
    assert mine.returncode == 2 and "Traceback" not in mine.stderr
    assert _tree(packed) == before and (plain / "images").is_dir()


def test_readers_of_image_folders_point_at_unpack_for_a_packed_folder(plain_and_packed, cnn_dir, tmp_path):
    _, packed, _ = plain_and_packed
    params = {"seed": 0, "data": {"source": "local", "local": {"path": str(packed), "layout": "isic-cli"}}}
    with pytest.raises(PipelineError, match="packed raw folder.*skinlesion unpack"):
        sources.fetch(params, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    with pytest.raises(PipelineError, match="packed raw folder.*skinlesion unpack"):
        prediction.run(cnn_dir, [packed], tmp_path / "p.csv")


def test_the_images_of_a_packed_folder_decode_like_the_files(plain_and_packed):
    plain, packed, _ = plain_and_packed
    name = sorted(raw_layout.image_files(plain))[3]
    ref = raw_layout.image_files(packed)[name]
    assert ref.packed and str(ref).endswith(f".tar:images/{name}.jpg")
    assert np.array_equal(images.load_image(ref, 24), images.load_image(plain / "images" / f"{name}.jpg", 24))


def test_two_images_of_one_id_are_refused_not_packed_over_each_other(make_raw):
    raw = make_raw(records(2), name="raw")
    first = sorted((raw / "images").iterdir())[0]
    (raw / "images" / f"{first.stem}.png").write_bytes(first.read_bytes())
    with pytest.raises(PipelineError, match=f"two images share the id {first.stem}"):
        raw_packs.pack(raw, pack_bytes=1)  # one image a pack: X.jpg's pack and X.png's would have one name


# ---------------------------------------------------------------------------------------------------
# a raw folder is read, not followed: unpack refuses every link, names are ids, members are streamed

SECRET = b"root:x:0:0:OUTSIDE-SECRET-51d2e0:/root:/bin/bash\n" * 40  # stands for /etc/passwd


def test_unpack_refuses_a_file_named_as_an_image_but_for_letter_case(plain_and_packed, tmp_path):
    """A stray X.JPG at the top of a packed folder whose packs hold X.jpg: one file on a case-insensitive
    file system, so unpack refuses in one line and writes nothing."""
    _, packed, rows = plain_and_packed
    stray = packed / f"{rows[0]['isic_id']}.JPG"
    stray.write_bytes(b"not the image")
    dest = tmp_path / "unpacked"
    result = _unpack(packed, dest)
    _refused_in_one_line(result, stray.name, "letter case")
    assert not dest.exists()


def _outside(tmp_path):
    path = tmp_path / "elsewhere" / "secret"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(SECRET)
    return path


def _refused_in_one_line(result, *words):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]  # besides tqdm's bar
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr


def test_unpack_refuses_a_pack_linked_outside(plain_and_packed, tmp_path):
    """A pack linked to /etc/passwd with a manifest row that matches its first 512 bytes: the sha256 checks
    pass, so only not following the link keeps those bytes out of DEST."""
    _, packed, _ = plain_and_packed
    outside = _outside(tmp_path)
    pack = sorted((packed / "packs").iterdir())[0]
    pack.unlink()
    pack.symlink_to(outside)
    manifest = pd.read_csv(packed / "manifest.csv")
    manifest.loc[0, ["offset", "size", "sha256"]] = [0, 512, hashlib.sha256(SECRET[:512]).hexdigest()]
    manifest.to_csv(packed / "manifest.csv", index=False)
    result = _unpack(packed, tmp_path / "dest")
    _refused_in_one_line(result, f"{pack} is a symbolic link (to {outside})", "follows no link")
    assert not (tmp_path / "dest").exists() and not list(tmp_path.glob(".dest.*"))  # nothing half-written
    # the packs folder itself a link out of the raw folder: the same
    (packed / "packs").rename(tmp_path / "packs-elsewhere")
    (packed / "packs").symlink_to(tmp_path / "packs-elsewhere")
    _refused_in_one_line(_unpack(packed, tmp_path / "dest"), f"{packed / 'packs'} is a symbolic link")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("where", ["licenses/CC-0.txt", "licenses", "metadata.csv", "notes.txt"])
def test_unpack_copies_no_link_and_no_byte_behind_one(plain_and_packed, tmp_path, where):
    _, packed, _ = plain_and_packed
    outside = _outside(tmp_path)
    link = packed / where
    if link.is_dir():
        subprocess.run(["rm", "-r", str(link)], check=True)
        (tmp_path / "elsewhere" / "CC-0.txt").write_bytes(SECRET)
        link.symlink_to(outside.parent)
    else:
        link.unlink(missing_ok=True)
        link.symlink_to(outside)
    result = _unpack(packed, tmp_path / "dest")
    _refused_in_one_line(result, f"{link} is a symbolic link", "replace the link by the file itself")
    assert not (tmp_path / "dest").exists()


def test_unpack_of_a_plain_folder_refuses_a_linked_image(plain_and_packed, tmp_path):
    plain, _, _ = plain_and_packed
    image = sorted((plain / "images").iterdir())[0]
    image.unlink()
    image.symlink_to(_outside(tmp_path))
    _refused_in_one_line(_unpack(plain, tmp_path / "dest"), f"{image} is a symbolic link")
    assert not (tmp_path / "dest").exists()


def test_the_fetch_stage_packs_no_link(make_raw, tmp_path):
    raw = make_raw(records(2), name="raw")
    image = sorted((raw / "images").iterdir())[0]
    image.unlink()
    image.symlink_to(_outside(tmp_path))
    with pytest.raises(PipelineError, match=f"{image} is a symbolic link.*packs regular files only"):
        raw_packs.pack(raw)


@pytest.mark.parametrize("name", ["../x.jpg", "ISIC_1/../../y.jpg", "/etc/passwd", "ISIC_1.jpg/../../z.jpg",
                                  "ISIC 1.jpg", "ISIC_1.exe", ".jpg", "ISIC_1..jpg"])
def test_a_manifest_name_that_is_not_an_id_is_refused_in_one_line(plain_and_packed, tmp_path, name):
    _, packed, _ = plain_and_packed
    manifest = pd.read_csv(packed / "manifest.csv")
    manifest.loc[3, "file"] = name
    manifest.to_csv(packed / "manifest.csv", index=False)
    with pytest.raises(PipelineError, match="manifest.csv line 5: .* is not an image name"):
        raw_layout.image_files(packed)
    _refused_in_one_line(_unpack(packed, tmp_path / "dest"), "line 5", "is not an image name", "fetch again")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("pack", ["packs/../../x.tar", "packs/a/b.tar", "packs/ISIC 1.tar", "elsewhere/x.tar"])
def test_a_manifest_pack_that_is_not_a_pack_name_is_refused(plain_and_packed, pack):
    _, packed, _ = plain_and_packed
    manifest = pd.read_csv(packed / "manifest.csv")
    manifest.loc[0, "pack"] = pack
    manifest.to_csv(packed / "manifest.csv", index=False)
    with pytest.raises(PipelineError, match="line 2: .* is not a pack name"):
        raw_layout.image_files(packed)


def test_unpack_streams_a_huge_sparse_member_in_blocks(tmp_path):
    """A manifest row of 256 MiB in a sparse pack (the probe's was 1 GiB): written to DEST in blocks of
    io.COPY_BLOCK, never held in memory whole."""
    import tracemalloc

    from skinlesion import io as sio

    size = 256 * 2**20
    raw = tmp_path / "raw"
    (raw / "packs").mkdir(parents=True)
    with open(raw / "packs" / "ISIC_0000001.tar", "wb") as fh:
        fh.truncate(512 + size)  # a hole: no disk, all zeros
    digest = hashlib.sha256()
    for _ in range(size // sio.COPY_BLOCK):
        digest.update(bytes(sio.COPY_BLOCK))
    pd.DataFrame([["ISIC_0000001.jpg", "packs/ISIC_0000001.tar", 512, size, digest.hexdigest()]],
                 columns=raw_packs.MANIFEST_COLUMNS).to_csv(raw / "manifest.csv", index=False)
    tracemalloc.start()
    try:
        assert raw_packs.unpack(raw, tmp_path / "dest", raw_layout.IMAGE_SUFFIXES) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "dest" / "ISIC_0000001.jpg").stat().st_size == size
    assert peak < 8 * sio.COPY_BLOCK, peak  # a few blocks, not the member
    # a sha256 that does not match: refused after streaming, DEST left as it was
    manifest = pd.read_csv(raw / "manifest.csv")
    manifest.loc[0, "sha256"] = "0" * 64
    manifest.to_csv(raw / "manifest.csv", index=False)
    with pytest.raises(raw_packs.DamagedPack, match="is not the image manifest.csv records"):
        raw_packs.unpack(raw, tmp_path / "dest", raw_layout.IMAGE_SUFFIXES)
    assert (tmp_path / "dest" / "ISIC_0000001.jpg").stat().st_size == size


def test_unpack_refuses_two_images_whose_names_differ_only_in_letter_case(plain_and_packed, tmp_path):
    """images/X.jpg and images/x.jpg: two files here, one on a case-insensitive file system, so unpack
    names both in one line and writes nothing."""
    plain, _, rows = plain_and_packed
    first = plain / "images" / f"{rows[0]['isic_id']}.jpg"
    twin = first.with_name(first.name.lower())
    twin.write_bytes(first.read_bytes())
    dest = tmp_path / "unpacked"
    result = _unpack(plain, dest)
    _refused_in_one_line(result, first.name, twin.name, "letter case")
    assert not dest.exists()
