"""Shared fixtures: small hand-made raw folders, the repo paths, the tiny-pipeline params."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from skinlesion import bundle, raw_layout
from skinlesion.variant import of as variant

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HAM10000 = SHARED / "data" / "ham10000"
# Shipped with the repository (weights/README.md), so a bare clone's tests train from ImageNet weights.
MOBILENET_WEIGHTS = REPO / "weights" / "mobilenet_v2_1.0_224_no_top_imagenet.h5"
BIN = Path(sys.executable).parent
CNN_SIZE = 32  # input size of the cnn_dir fixture


def tool(name: str) -> str:
    """A console script of this environment (snakemake, dvc, skinlesion), found beside python."""
    path = BIN / name
    return str(path) if path.exists() else name


def need(module: str, why: str) -> None:
    """Skip, naming the install command, where an optional package is missing."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({why}): pip install -e '.[test,cluster]' -c constraints.txt")


def tool_env() -> dict[str, str]:
    """The environment the pipeline's commands run in here: the virtual environment first on PATH, offline."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "SKINLESION_OFFLINE": "1"}


def run(cmd: list[str], cwd: Path, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned(folder: Path, *args: str) -> list[str]:
    """The jobs `snakemake -n [args] results/all` would run, as DVC names stages (rule@variant); [] when
    nothing."""
    out = run([tool("snakemake"), "-n", *args, "results/all"], cwd=folder)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return []
    jobs = []
    for block in re.split(r"\n(?=\[|rule )", text):
        if m := re.search(r"^rule (\w+):", block, re.M):
            w = re.search(r"wildcards: variant=(\w+)", block)
            jobs.append(m.group(1) + (f"@{w.group(1)}" if w else ""))
    return sorted(jobs)


def dvc_changed(folder: Path) -> list[str]:
    """The stages `dvc status` names; [] when DVC is up to date."""
    status = json.loads(run([tool("dvc"), "status", "--json"], cwd=folder).stdout or "{}")
    return sorted(status)


def base_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(**variants) -> dict:
    """The default params, shrunk to a run of about a minute, with the offline MobileNetV2 weights."""
    params = base_params()
    params["data"] = {"source": "synthetic", "synthetic": {**params["data"]["synthetic"], "n_patients": 120}}
    params["train"]["weights"] = {"mobilenet_v2": str(MOBILENET_WEIGHTS), "resnet50": None}
    params["train"]["epochs"] = 30
    params["train"]["patience"] = 5
    params["variants"] = variants or {
        "logreg": {"kind": "logreg", "task": "binary"},
        "mobilenet_frozen": {"kind": "transfer", "task": "binary", "backbone": "mobilenet_v2", "freeze": True,
                             "dense_units": 64},
    }
    return params


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def copy_workflow(dest: Path) -> Path:
    """The files a user's clone has that the runners need (no data, no outputs): the rules, dvc.yaml,
    and the code and weights the stages depend on."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("workflow", "src", "weights"):
        shutil.copytree(REPO / folder, dest / folder, ignore=ignore)
    return dest


def lesion_image(rng: np.random.Generator, size: int = 64, dark: bool = False) -> Image.Image:
    """A skin-coloured square with a round lesion; `dark` lesions are darker (a visible signal)."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8) + np.array([220, 180, 160], dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    radius = size * (0.3 if dark else 0.2)
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius ** 2
    pixels[mask] = (40, 30, 30) if dark else (140, 100, 80)
    noise = rng.integers(0, 12, size=pixels.shape, dtype=np.uint8)
    return Image.fromarray(pixels + noise)


@pytest.fixture
def make_raw(tmp_path):
    """make_raw(records) -> a raw folder in isic-cli layout with one small JPEG per record."""

    def _make(records: list[dict], name: str = "raw", corrupt: tuple[str, ...] = ()) -> Path:
        raw = tmp_path / name
        (raw / "images").mkdir(parents=True)
        rng = np.random.default_rng(0)
        for record in records:
            path = raw / "images" / f"{record['isic_id']}.jpg"
            if record["isic_id"] in corrupt:
                path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
            else:
                lesion_image(rng, dark=record.get("diagnosis_1") == "Malignant").save(path, quality=90)
        full = [{"attribution": "test", "copyright_license": "CC-0", **r} for r in records]
        raw_layout.write_metadata_csv(full, raw / "metadata.csv")
        raw_layout.write_attribution(full, raw / "attribution.txt")
        raw_layout.write_licenses({"CC-0"}, raw / "licenses")
        return raw

    return _make


def records(n_patients: int = 30, seed: int = 0) -> list[dict]:
    """ISIC-shaped metadata rows: 2 images per patient, a third malignant, some fields missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        malignant = p % 3 == 0
        for k in range(2):
            rows.append({
                "isic_id": f"ISIC_{p * 10 + k:07d}",
                "patient_id": f"IP_{p:07d}",
                "lesion_id": f"IL_{p:07d}",
                "age_approx": "" if p % 7 == 0 else str(int(rng.integers(6, 17)) * 5),
                "sex": "" if p == 5 else ("male" if p % 2 else "female"),
                "clin_size_long_diam_mm": "" if p % 4 == 0 else f"{rng.uniform(2, 12):.1f}",
                "anatom_site_1": "Trunk",
                "diagnosis_1": "Malignant" if malignant else "Benign",
                "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)" if malignant else "Benign melanocytic proliferations",
                "diagnosis_3": "Melanoma Invasive" if malignant else "Nevus",
            })
    return rows


def params_for_raw(**overrides) -> dict:
    params = copy.deepcopy(base_params())
    params.update(overrides)
    return params


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory):
    """A tiny CNN saved as the train stage saves one (models/<variant>, no decision), its score rising with
    image brightness (test_predict, test_recalibration).

    Fixed weights, not a random init: a random ReLU net can be dead on every input (then every score is
    0.5 and the threshold test below cannot tell images apart), and its init depends on what ran before.
    """
    from skinlesion import models

    folder = tmp_path_factory.mktemp("models") / "tiny_cnn"
    folder.mkdir()
    cfg = variant({"name": "tiny_cnn", "kind": "cnn", "task": "binary", "filters": [4], "dense_units": 4})
    model = models.cnn(cfg, CNN_SIZE, seed=0)
    # Every kernel averages its inputs, so each unit carries the mean brightness b in [0, 1] and the
    # score is sigmoid(8 b - 2).
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
            out = layer.name == "output"
            layer.set_weights([np.full_like(kernel, (8.0 if out else 1.0) / fan_in),
                               np.full_like(bias, -2.0 if out else 0.0)])
    model.save(folder / "model.keras")
    bundle.seal(folder, bundle.manifest(
        cfg, input_size=CNN_SIZE, imputation_means={}, training_data={"source": "local"},
        weights={"source": "fixed by hand", "imagenet": None}))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


S3_BUCKET = "skinlesion-plan"


@pytest.fixture
def s3(monkeypatch):
    """A local S3 (moto's server mode: moto reimplements the S3 API from AWS's own service model, the stand-in
    the boto and DVC projects test against) with one bucket, S3_BUCKET; fake credentials only.
    Yields (endpoint URL, the credential variables)."""
    need("moto", "the local S3 server")
    need("boto3", "the local S3 server")
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        for _ in range(100):
            try:
                client.create_bucket(Bucket=S3_BUCKET)
                break
            except Exception:
                time.sleep(0.2)
        else:
            raise AssertionError("moto's S3 server did not start")
        yield endpoint, env
    finally:
        server.terminate()
        server.wait(timeout=30)
