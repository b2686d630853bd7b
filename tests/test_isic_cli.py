"""`skinlesion download` flags and dry run, the isic source via params, ISIC_API_URL, staging and resume."""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path


import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import FakeIsic, Fault, client_config  # noqa: E402

from skinlesion import params as P  # noqa: E402
from skinlesion import raw_layout, sources  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.commands import download as command  # noqa: E402
from skinlesion.sources.isic.options import DEFAULT_API_URL, resolve_api_url  # noqa: E402

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    with FakeIsic(30) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch):
    monkeypatch.delenv("ISIC_API_URL", raising=False)


def run_download(argv, capsys):
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(argv)
    assert command.run(args) == 0
    return capsys.readouterr().out


def dry_numbers(text):
    match = re.search(r"dry run: (\d+) images, (\d+) bytes", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def test_dry_run_full_files_uses_the_size_endpoint(server, tmp_path, capsys):
    out = run_download(["--out", str(tmp_path / "x"), "--api-url", server.api_url, "--allowed-hosts", server.files_host, "--query", "sex:female",
                        "--collections", "70", "--dry-run"], capsys)
    want = server.matching("sex:female", (70,))
    assert dry_numbers(out) == (len(want), sum(r["files"]["full"]["size"] for r in want))
    assert len(server.requests_to("/images/search/size/")) == 1
    searches = [e for e in server.requests_to("/images/search/") if "size" not in e["path"]]
    assert len(searches) == 1 and searches[0]["query"]["limit"] == ["1"]  # only the count was asked for
    assert not server.requests_to("/s3/") and not (tmp_path / "x").exists()
    assert "enough" in out


def test_dry_run_with_caps_limit_or_thumbnails_sums_the_records(server, tmp_path, capsys):
    out = run_download(["--out", str(tmp_path / "x"), "--api-url", server.api_url, "--allowed-hosts", server.files_host,
                        "--max-per-class", "benign=4,malignant=3", "--dry-run"], capsys)
    records = server.records
    chosen = [r for r in records if r["metadata"].get("clinical", {}).get("diagnosis_1") == "Benign"][:4]
    chosen += [r for r in records if r["metadata"].get("clinical", {}).get("diagnosis_1") == "Malignant"][:3]
    assert dry_numbers(out) == (7, sum(r["files"]["full"]["size"] for r in chosen))
    assert "per class: benign 4, malignant 3" in out

    out = run_download(["--out", str(tmp_path / "x"), "--api-url", server.api_url, "--allowed-hosts", server.files_host, "--limit", "5",
                        "--thumbnails", "--dry-run"], capsys)
    assert dry_numbers(out) == (5, sum(r["files"]["thumbnail_256"]["size"] for r in records[:5]))
    assert "of thumbnails" in out
    assert not server.requests_to("/images/search/size/") and not server.requests_to("/s3/")


def test_dry_run_reports_what_is_still_missing(server, tmp_path, capsys):
    out_dir = tmp_path / "x"
    run_download(["--out", str(out_dir), "--api-url", server.api_url, "--allowed-hosts", server.files_host, "--limit", "3"], capsys)
    out = run_download(["--out", str(out_dir), "--api-url", server.api_url, "--allowed-hosts", server.files_host, "--limit", "5", "--dry-run"], capsys)
    records = server.records
    missing = sum(r["files"]["full"]["size"] for r in records[3:5])
    assert f"still to fetch into {out_dir}: {missing} bytes" in out


def test_download_writes_source_json_with_the_options(server, tmp_path, capsys):
    out_dir = tmp_path / "x"
    text = run_download(["--out", str(out_dir), "--api-url", server.api_url, "--allowed-hosts", server.files_host, "--limit", "4", "--thumbnails",
                         "--collections", "70,65", "--query", "sex:female OR sex:male"], capsys)
    assert re.search(r"4 images complete .* 4 downloaded", text)
    source = json.loads((out_dir / "source.json").read_text())
    assert source["source"] == "isic" and source["images"] == 4
    assert source["thumbnails"] is True and source["files"] == "thumbnail_256"
    assert source["collections"] == [70, 65] and source["query"] == "sex:female OR sex:male"
    assert source["api_url"] == server.api_url


def test_isic_api_url_wins_over_params_and_flags(server, tmp_path, monkeypatch):
    assert resolve_api_url(None, env={}) == DEFAULT_API_URL
    assert resolve_api_url("http://params.example/api/v2/", env={}) == "http://params.example/api/v2"
    assert resolve_api_url("http://params.example", env={"ISIC_API_URL": server.api_url}) == server.api_url

    monkeypatch.setenv("ISIC_API_URL", server.api_url)
    params = {"seed": 1, "data": {"source": "isic", "isic": {
        **client_config(server, limit=3), "api_url": "http://127.0.0.1:9/api/v2", "retries": 0}}}
    out = tmp_path / "data" / "raw"
    summary = sources.fetch(params, out)
    assert summary["api_url"] == server.api_url
    assert len(raw_layout.image_files(out)) == 3  # packed by the fetch stage
    assert len(server.requests_to("/s3/images/")) == 3


def test_params_yaml_selects_the_isic_source(server, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = copy.deepcopy(params)
    params["data"]["source"] = "isic"
    params["data"]["isic"].update(client_config(server, limit=6, max_per_class={"benign": 3, "malignant": 3}))
    P.validate(params)  # the added keys (timeouts, backoff) are in the schema
    bad = copy.deepcopy(params)
    bad["data"]["isic"]["max_per_class"] = {"melanoma": 3}
    with pytest.raises(PipelineError, match="max_per_class"):
        P.validate(bad)

    out = tmp_path / "data" / "raw"
    sources.fetch(params, out)
    source = json.loads((out / "source.json").read_text())
    assert source["source"] == "isic" and source["images"] == 6
    assert source["per_class"] == {"benign": 3, "malignant": 3}
    assert source["thumbnails"] is False and source["api_url"] == server.api_url
    for name in ("metadata.csv", "attribution.txt"):
        assert (out / name).is_file()
    assert sorted(p.name for p in (out / "licenses").iterdir())
    assert not (tmp_path / "data" / ".isic-download").exists()  # staging cleaned up after success
    assert sorted(p.parent.name for p in tmp_path.rglob("*") if p.name.endswith(".part")) == []


def test_an_interrupted_fetch_resumes_from_its_staging_folder(server, tmp_path):
    victim = server.records[2]
    server.faults.append(Fault("/s3/images/" + victim["isic_id"], status=500, times=None))
    params = {"seed": 1, "data": {"source": "isic", "isic": client_config(server, limit=8, retries=1)}}
    out = tmp_path / "data" / "raw"
    with pytest.raises(PipelineError, match=victim["isic_id"]):
        sources.fetch(params, out)
    assert not out.exists()  # the raw folder appears whole or not at all
    staged = list((tmp_path / "data" / ".isic-download").glob("*/*.jpg"))
    staged += list((tmp_path / "data" / ".isic-download").glob("*/*.png"))
    assert len(staged) == 7

    server.faults.clear()
    mark = len(server.log)
    sources.fetch(params, out)
    again = [e["path"] for e in server.log[mark:] if e["path"].startswith("/s3/")]
    assert again == [server.key_of(victim)]
    packed = {ref.name: ref for ref in raw_layout.image_files(out).values()}
    for record in server.records[:8]:
        assert packed[Path(server.key_of(record)).name].read_bytes() == server.file_bytes(record)
    assert not (tmp_path / "data" / ".isic-download").exists()


def test_a_changed_selection_stages_separately(server, tmp_path):
    victim = server.records[0]
    server.faults.append(Fault("/s3/images/" + victim["isic_id"], status=500, times=None))
    out = tmp_path / "raw"
    for limit in (3, 4):
        params = {"seed": 1, "data": {"source": "isic", "isic": client_config(server, limit=limit, retries=0)}}
        with pytest.raises(PipelineError):
            sources.fetch(params, out)
    assert len(list((tmp_path / ".isic-download").iterdir())) == 2


def test_the_real_cli_fails_with_the_server_message(server, tmp_path):
    env = {**os.environ, "ISIC_API_URL": server.api_url}
    result = subprocess.run(
        [sys.executable, "-m", "skinlesion.cli", "download", "--out", str(tmp_path / "x"), "--query", "sex:(female"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "skinlesion download: error:" in result.stderr and "Could not parse search query." in result.stderr
    assert "Traceback" not in result.stderr
