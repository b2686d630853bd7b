"""Damaged and hostile local datasets: names that would be paths, conflicting duplicates, oversized images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from skinlesion import images, metadata, raw_layout, sources

from conftest import base_params, records


def write_dataset(root, rows, licenses=None):
    (root / "images").mkdir(parents=True)
    columns = sorted({k for r in rows for k in r})
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    rng = np.random.default_rng(0)
    for r in rows:
        name = str(r["isic_id"])
        if name and "/" not in name and "\x00" not in name and name not in (".", ".."):
            try:
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
            except (OSError, ValueError):
                pass
    if licenses:
        (root / "licenses").mkdir()
        for name, text in licenses.items():
            (root / "licenses" / name).write_text(text)
    return root


def row(isic_id, d1="Benign", **extra):
    return {"isic_id": isic_id, "diagnosis_1": d1, "sex": "female", "copyright_license": "CC-BY", **extra}


def snapshot(root, inside):
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
            if p != inside and inside not in p.parents}


def test_a_local_metadata_csv_cannot_write_outside_the_raw_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    rows = [row(f"ISIC_{i:07d}") for i in range(6)]
    rows += [row("ISIC_1000001", copyright_license="../../../escaped"),
             row("ISIC_1000002", copyright_license=str(victim.with_suffix(""))),
             row("ISIC_1000003\nISIC_x"), row("../ISIC_1000004"), row("ISIC_1000005.x")]
    data = write_dataset(tmp_path / "dataset", rows, licenses={"evil name.txt": "x", "CC-0.txt": "zero\n"})
    params = base_params()
    params["data"] = {"source": "local", "local": {"path": str(data), "layout": "isic-cli"}}
    out = tmp_path / "work" / "raw"
    before = snapshot(tmp_path, tmp_path / "work")
    sources.fetch(params, out)
    assert snapshot(tmp_path, tmp_path / "work") == before
    source = json.loads((out / "source.json").read_text())
    assert source["skipped"] == {"bad copyright_license": 2, "bad isic_id": 3}
    assert source["kept_images"] == 6
    assert sorted(p.name for p in (out / "licenses").iterdir()) == ["CC-0.txt", "CC-BY.txt"]
    names = [ref.name for ref in raw_layout.image_files(out).values()]
    assert len(names) == 6 and all(n.startswith("ISIC_") and "\n" not in n for n in names)


def test_duplicate_ids_with_conflicting_labels_are_excluded_as_conflicts(tmp_path):
    rows = [row(f"ISIC_{i:07d}") for i in range(6)]
    rows += [row("ISIC_0000001", "Malignant"),  # conflicts with the first ISIC_0000001
             row("ISIC_0000002")]  # a plain repeat: the first row is kept
    data = write_dataset(tmp_path / "dataset", rows)
    params = base_params()
    params["data"] = {"source": "local", "local": {"path": str(data)}}
    out = tmp_path / "raw"
    sources.fetch(params, out)
    source = json.loads((out / "source.json").read_text())
    assert source["conflicting_ids"] == ["ISIC_0000001"] and source["duplicate_rows"] == 1
    kept = pd.read_csv(out / "metadata.csv")["isic_id"].tolist()
    assert "ISIC_0000001" not in kept and kept.count("ISIC_0000002") == 1


def test_the_metadata_stage_drops_conflicting_duplicates_and_bad_ids(make_raw, tmp_path):
    rows = records(20)
    raw = make_raw(rows)
    table = pd.read_csv(raw / "metadata.csv", dtype=str, keep_default_na=False)
    conflict = table.iloc[[0]].assign(diagnosis_1="Malignant" if table.iloc[0]["diagnosis_1"] == "Benign" else "Benign")
    repeat = table.iloc[[2]]
    bad = table.iloc[[3]].assign(isic_id="../ISIC_x")
    pd.concat([table, conflict, repeat, bad]).to_csv(raw / "metadata.csv", index=False)
    frame, summary = metadata.build(raw, base_params())
    first = table.iloc[0]["isic_id"]
    assert summary["conflicts"] == [first] and first not in set(frame["isic_id"])
    assert summary["dropped"]["duplicate isic_id with conflicting labels"] == 2
    assert summary["dropped"]["duplicate isic_id"] == 1
    assert summary["dropped"]["missing or bad isic_id"] == 1


def test_an_image_over_max_pixels_is_quarantined_with_its_reason(make_raw, tmp_path):
    rows = records(10)
    raw = make_raw(rows)
    big = rows[0]["isic_id"]
    Image.new("RGB", (400, 300), (120, 80, 60)).save(raw / "images" / f"{big}.jpg")  # the others are 64x64
    params = base_params()
    params["images"] = {"size": 32, "shard_size": 16, "workers": 1, "max_pixels": 100_000}
    table = tmp_path / "metadata.parquet"
    metadata.run(raw, table, params)
    summary = images.run(table, raw, tmp_path / "shards", params)
    unreadable = pd.read_csv(tmp_path / "shards" / "unreadable.csv")
    assert unreadable["isic_id"].tolist() == [big]
    assert "400x300 = 120000 pixels, over images.max_pixels (100000)" in unreadable["error"][0]
    assert summary["unreadable"] == 1
    assert big not in set(pd.read_parquet(tmp_path / "shards" / "index.parquet")["isic_id"])


DAMAGED_CSV = {"a 0xFF byte": b"isic_id,diagnosis_1\nISIC_0000001,Benign\xff\n", "empty": b"",
               "an unclosed quote": b'isic_id,diagnosis_1\nISIC_0000001,"Benign\n'}


def one_line_exit_2(argv, capsys, command):
    from skinlesion import cli

    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"skinlesion {command}:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("damage", sorted(DAMAGED_CSV))
def test_a_damaged_metadata_csv_is_one_line_from_the_metadata_stage(make_raw, tmp_path, capsys, damage):
    raw = make_raw(records(4))
    (raw / "metadata.csv").write_bytes(DAMAGED_CSV[damage])
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(base_params()))
    line = one_line_exit_2(["metadata", "--params", str(params), "--raw", str(raw),
                            "--out", str(tmp_path / "metadata.parquet")], capsys, "metadata")
    assert str(raw / "metadata.csv") in line
    assert not (tmp_path / "metadata.parquet").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGED_CSV))
def test_a_damaged_local_metadata_csv_is_one_line_from_fetch(tmp_path, capsys, damage):
    data = write_dataset(tmp_path / "dataset", [row(f"ISIC_{i:07d}") for i in range(3)])
    (data / "metadata.csv").write_bytes(DAMAGED_CSV[damage])
    params = base_params()
    params["data"] = {"source": "local", "local": {"path": str(data), "layout": "isic-cli"}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    line = one_line_exit_2(["fetch", "--params", str(path), "--out", str(tmp_path / "raw")], capsys, "fetch")
    assert str(data / "metadata.csv") in line
    assert not (tmp_path / "raw").exists()
