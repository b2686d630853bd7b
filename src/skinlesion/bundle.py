"""The model bundle: one folder that scores new images on its own, on any machine.

    <bundle>/model.keras | model.npz      the trained network (preprocessing inside), or the logistic
                                          regression's fitted arrays (skinlesion.linear_model; no pickle)
    <bundle>/bundle.json                  everything else scoring needs, and where the model came from:
        variant, kind, task, classes          what it predicts
        input                                 image size and how images are decoded and resized
                                              (skinlesion.images.load_image, as the images stage did), with
                                              the images stage's non-default options (aspect,
                                              colour_constancy, colour_constancy_p; absent = default)
        metadata                              the features, their column layout, and the train means that
                                              filled missing values (fitted by the metadata stage on train)
        training_data                         source (synthetic, local, isic), size, content sha256
        weights                               the backbone's weights and where they came from
        decision                              the threshold and calibration evaluate chose on validation, and
                                              its test-time augmentation (`tta`, absent = none)
                                              (null in models/<variant>: train cannot know them)
        recalibration                         only in a bundle `skinlesion recalibrate` wrote: where its
                                              decision was refitted, on what, and how well (recalibration.py)
        skinlesion_version, variant_config    the package and the variant's full settings
        files                                 {name: sha256} of every other file in the folder (the model
                                              file, seen.json, and train's train.json, history.csv): checked
                                              on load
    <bundle>/seen.json                    what the model saw: the train and validation splits' isic_id,
                                          lesion_id and patient_id values and pixel hashes (skinlesion.overlap),
                                          so recalibrate refuses a local set that overlaps them; bundles
                                          written before it have none (then nothing is checked, and it says so)

The train stage writes models/<variant>/ (decision null); the evaluate stage writes the complete bundle,
bundles/<variant>/, a copy with its decision filled in (its own output, so the DAG stays honest).
`skinlesion predict`, evaluate and Grad-CAM load a bundle through Bundle alone.

A bundle is untrusted input (bundles are handed from person to person). Bundle() reads bundle.json (at most
MAX_MANIFEST bytes) and checks it against schemas/bundle.schema.yaml and the kinds and tasks before anything
else is read; then the folder: only plain files (no link, no folder), exactly those `files` names, each with
its recorded sha256 (MAX_FILE bytes at most); the model is loaded (Keras in safe mode) only after all that,
and checked against bundle.json (inputs, outputs, backbone). Every refusal is one PipelineError line naming
the bundle, the field or file, and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__, features, kinds, linear_model, params, tasks
from .errors import PipelineError
from .images import FLIPS, Decoding, flipped
from .io import SNAKEMAKE_TIMESTAMP, atomic_path, write_json
from .overlap import ID_COLUMNS, SEEN, SEEN_VALUE_CHARS

log = logging.getLogger(__name__)
MANIFEST = "bundle.json"
FORMAT = 2  # 2: `files` (the sha256 of every file) recorded and checked; 1 had none and is refused
MAX_MANIFEST = 1 << 20  # bytes of bundle.json read at most
MAX_FILE = 2 << 30  # bytes of any file of a bundle (the model's included)
MAX_ENTRIES = 64  # files in a bundle folder (the schema's `files` bound)
MAX_SEEN = 256 << 20  # bytes of seen.json read at most (about 2.5 million images' ids and hashes)
RETRAIN = "re-run skinlesion train and evaluate (or recalibrate) to write a new bundle"
CONVERT = ("if you trust where it came from, convert it: skinlesion convert-bundle OLD -o NEW "
           "(--trust-pickle for a model.joblib, which runs any code it holds when loaded)")
PICKLES = (".joblib", ".pkl", ".pickle")
RESIZE = "skinlesion.images.load_image: decode (JPEG draft scaling), convert to RGB, bilinear resize to size x size"


def training_data_hash(table: pd.DataFrame, columns: list[str], shards_dir: str | os.PathLike | None) -> str:
    """sha256 of what the model was trained on: the training rows (ids, labels, metadata features) and the
    image shards they were read from."""
    digest = hashlib.sha256()
    digest.update(table[columns].to_csv(index=False).encode())
    if shards_dir is not None and "shard" in table:
        for shard in sorted(set(table["shard"].astype(int))):
            with open(Path(shards_dir) / f"shard-{shard:05d}.npy", "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


TTA = ("none", "flips")  # evaluate.tta: none, or the mean of the scores of the four flips of each image


def manifest(variant, *, input_size: int | None, imputation_means: dict, training_data: dict,
             weights: dict, decoding: Decoding | None = None) -> dict:
    """bundle.json as the train stage writes it (no decision yet). `decoding`: how the training images were
    decoded; only its non-default fields are written (none for the defaults: the same bytes as before)."""
    meta = None
    if variant.kind.metadata:
        meta = {"features": list(variant.features), "columns": features.column_names(list(variant.features)),
                "imputation_means": imputation_means,
                "note": "missing age_approx / clin_size_long_diam_mm are filled with imputation_means (the train "
                        "split's) and flagged in <column>_missing; missing sex scores 0.5, missing site "
                        "site_missing"}
    return {
        "format": FORMAT, "skinlesion_version": __version__,
        "variant": variant.name, "kind": variant.kind.name, "task": variant.task.name,
        "classes": list(variant.task.classes), "model_file": variant.kind.saved_as,
        "input": {"image_size": input_size, "resize": RESIZE,
                  "pixels": "RGB uint8 0..255; the model preprocesses inside its graph",
                  **(decoding.changed() if decoding is not None else {})} if variant.kind.images
        else None,
        "metadata": meta, "training_data": training_data, "weights": weights,
        "decision": None, "variant_config": variant.as_dict(),
    }


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + "..."


def _open_plain(path: Path, what: str, limit: int):
    """`path` opened for reading if it is a plain file (not a link, not a folder, not a device) of at most
    `limit` bytes; PipelineError naming `what` otherwise. O_NOFOLLOW: a link swapped in after the check is not
    followed either."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise PipelineError(f"{what}: not found; the bundle is incomplete: copy the whole folder, or {RETRAIN}") \
            from None
    except OSError as exc:
        if os.path.islink(path):
            raise PipelineError(f"{what} is a symbolic link: a bundle holds its files itself (copy them with "
                                "cp -L), links are never followed") from None
        raise PipelineError(f"{what} cannot be read: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise PipelineError(f"{what} is not a plain file: a bundle holds only plain files")
    if info.st_size > limit:
        os.close(fd)
        raise PipelineError(f"{what} is {info.st_size} bytes, over the {limit} a bundle file may have")
    return os.fdopen(fd, "rb")


def file_sha256(path: str | os.PathLike, what: str | None = None, limit: int = MAX_FILE) -> str:
    """sha256 of a plain file, read in 1 MiB blocks (never a link, never more than `limit` bytes)."""
    digest = hashlib.sha256()
    with _open_plain(Path(path), what or str(path), limit) as f:
        read = 0
        for block in iter(lambda: f.read(1 << 20), b""):
            read += len(block)
            if read > limit:
                raise PipelineError(f"{what or path} grew past the {limit} bytes a bundle file may have")
            digest.update(block)
    return digest.hexdigest()


def _entries(folder: Path, where: str) -> list[str]:
    """The names in a bundle folder besides bundle.json; PipelineError for a link, a folder or too many."""
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_symlink():
                raise PipelineError(f"{where}: {entry.name} is a symbolic link: a bundle holds its files itself "
                                    "(copy them with cp -L), links are never followed")
            # Snakemake's marker in a directory output (models/<variant>) is the runner's, never read.
            if entry.name in (MANIFEST, SNAKEMAKE_TIMESTAMP):
                continue
            if not entry.is_file(follow_symlinks=False):
                raise PipelineError(f"{where}: {entry.name} is not a plain file: a bundle holds only plain files "
                                    "(bundle.json and those its `files` names)")
            names.append(entry.name)
            if len(names) > MAX_ENTRIES:
                raise PipelineError(f"{where}: more than {MAX_ENTRIES} files: not a model bundle")
    return sorted(names)


def file_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """{name: sha256} of every file in a bundle folder besides bundle.json (bundle.json's `files`)."""
    folder = Path(folder)
    where = f"bundle {folder}"
    return {name: file_sha256(folder / name, f"{where}: {name}") for name in _entries(folder, where)}


def seal(folder: str | os.PathLike, info: dict) -> dict:
    """Write `info` as the bundle.json of `folder`, with `files`: the sha256 of every other file in it (so
    write it last). Returns what was written."""
    info = {**info, "format": FORMAT, "files": file_hashes(folder)}
    write_json(Path(folder) / MANIFEST, info)
    return info


def read_manifest(folder: str | os.PathLike) -> dict:
    """bundle.json of a bundle folder, read (at most MAX_MANIFEST bytes, never through a link) and checked
    against the bundle schema, the kinds and the tasks; one-line PipelineError naming the field otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    where = f"bundle {folder}"
    with _open_plain(path, f"{where}: {MANIFEST}", MAX_MANIFEST) as f:
        raw = f.read(MAX_MANIFEST + 1)
    if not raw.strip():
        raise PipelineError(f"{where}: {MANIFEST} is empty: expected a JSON object (variant, kind, task, classes, "
                            f"model_file, files); {RETRAIN}")
    try:
        info = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise PipelineError(f"{where}: {MANIFEST} is not valid JSON ({_one_line(exc)}); {RETRAIN}") from None
    if not isinstance(info, dict):
        raise PipelineError(f"{where}: {MANIFEST} holds a JSON {type(info).__name__}: expected an object (variant, "
                            f"kind, task, classes, model_file, files); {RETRAIN}")
    if info.get("format") != FORMAT:
        found = info.get("format")
        raise PipelineError(f"{where}: bundle format {found if isinstance(found, int) else repr(found)[:40]} is "
                            f"not the {FORMAT} this skinlesion {__version__} reads (format {FORMAT} records "
                            f"the sha256 of every file); {CONVERT}, or {RETRAIN}")
    params.validate(info, origin=f"{where}: {MANIFEST}", schema_name="bundle")
    _check_fields(info, where)
    return info


def _check_fields(info: dict, where: str) -> None:
    """What the schema cannot say: classes vs the task, model_file vs the kind, columns vs features."""
    kind, task = kinds.get(info["kind"]), tasks.get(info["task"])
    at = f"{where}: {MANIFEST}: field"
    if list(info["classes"]) != list(task.classes):
        raise PipelineError(f"{at} 'classes': {info['classes']!r:.200} does not match task {task.name}: expected "
                            f"{list(task.classes)}")
    model_file, files = info["model_file"], info["files"]
    if model_file == MANIFEST or MANIFEST in files:
        raise PipelineError(f"{at} 'model_file': {MANIFEST} is the manifest, not a model file")
    suffix = Path(kind.saved_as).suffix
    if Path(model_file).suffix in PICKLES:
        raise PipelineError(f"{at} 'model_file': {model_file} is a pickle, which can run code when loaded: a bundle's "
                            f"model is never unpickled; {CONVERT}")
    if Path(model_file).suffix != suffix:
        raise PipelineError(f"{at} 'model_file': {model_file} does not match kind {kind.name}: expected a {suffix} "
                            f"file ({kind.saved_as})")
    if model_file not in files:
        raise PipelineError(f"{at} 'files': no sha256 for the model file {model_file}: expected every file of "
                            f"the bundle in it; {RETRAIN}")
    if kind.images:
        if not isinstance(info.get("input"), dict) or not isinstance(info["input"].get("image_size"), int):
            raise PipelineError(f"{at} 'input.image_size': missing; expected the input size (16..1024) of a "
                                f"{kind.name} model")
    if kind.metadata:
        meta = info.get("metadata")
        if not isinstance(meta, dict):
            raise PipelineError(f"{at} 'metadata': missing; expected the features of a {kind.name} model")
        if list(meta["columns"]) != features.column_names(list(meta["features"])):
            raise PipelineError(f"{at} 'metadata.columns': does not match its features: expected "
                                f"{features.column_names(list(meta['features']))}")


class Bundle:
    """A bundle folder loaded for scoring: the only way evaluate, predict and Grad-CAM read a model."""

    def __init__(self, folder: str | os.PathLike):
        self.dir = Path(folder)
        if not self.dir.is_dir() or not os.path.lexists(self.dir / MANIFEST):
            raise PipelineError(f"{self.dir} is not a model bundle (no {MANIFEST}): give models/<variant> or "
                                "bundles/<variant> of a trained and evaluated variant (skinlesion train / evaluate).")
        self.root = self.dir.resolve()
        self.info = read_manifest(self.dir)
        self.name = self.info["variant"]
        self.kind = kinds.get(self.info["kind"])
        self.task = tasks.get(self.info["task"])
        self.classes = self.info["classes"]
        self._verify()

    @property
    def where(self) -> str:
        return f"bundle {self.dir}"

    def _verify(self) -> None:
        """The folder holds exactly bundle.json and its `files`, plain files with their recorded sha256."""
        files = self.info["files"]
        present = _entries(self.dir, self.where)
        extra = [n for n in present if n not in files]
        if extra:
            raise PipelineError(f"{self.where}: {extra[0]} is not one of the files bundle.json records (`files`): "
                                "remove it, or copy the bundle again")
        missing = [n for n in files if n not in present]
        if missing:
            raise PipelineError(f"{self.where}: {missing[0]} is missing: the bundle is incomplete; copy the whole "
                                "folder")
        self._stats = {}
        for name in sorted(files):
            if file_sha256(self.dir / name, f"{self.where}: {name}") != files[name]:
                raise PipelineError(f"{self.where}: {name} has changed since the bundle was written (its sha256 is "
                                    "not the one bundle.json records): copy the bundle again from its source")
            st = os.lstat(self.dir / name)
            self._stats[name] = (st.st_ino, st.st_size, st.st_mtime_ns)

    def seen(self) -> dict | None:
        """seen.json (skinlesion.overlap.record) checked for shape, or None when the bundle has none."""
        if SEEN not in self.info["files"]:
            return None
        where = f"{self.where}: {SEEN}"
        path = self.root / SEEN
        if os.lstat(path).st_size > MAX_SEEN:
            raise PipelineError(f"{where} holds more than {MAX_SEEN} bytes: not what the train stage writes")
        with _open_plain(path, where, MAX_SEEN) as fh:
            try:
                seen = json.loads(fh.read(MAX_SEEN + 1))
            except (ValueError, UnicodeDecodeError) as exc:
                raise PipelineError(f"{where} is not JSON ({_one_line(exc)}): {RETRAIN}") from None
        if not isinstance(seen, dict):
            raise PipelineError(f"{where} is not an object of id lists: {RETRAIN}")
        for way in (*ID_COLUMNS, "pixels"):
            values = seen.get(way, [])
            if not isinstance(values, list) or not all(isinstance(v, str) and 0 < len(v) <= SEEN_VALUE_CHARS
                                                       for v in values):
                raise PipelineError(f"{where}: '{way}' is not a list of ids of at most {SEEN_VALUE_CHARS} "
                                    f"characters: {RETRAIN}")
        shape = seen.get("pixels_shape")
        if shape is not None and not (isinstance(shape, list) and len(shape) == 3
                                      and all(isinstance(n, int) and 0 < n <= 4096 for n in shape)):
            raise PipelineError(f"{where}: 'pixels_shape' is not [height, width, channels]: {RETRAIN}")
        return seen

    def _model_path(self) -> Path:
        """The model file: a plain file directly inside the bundle, unchanged since it was verified."""
        name = self.info["model_file"]
        path = self.root / name
        if path.parent != self.root or path.resolve().parent != self.root or path.is_symlink():
            raise PipelineError(f"{self.where}: field 'model_file': {name} is not a plain file inside the bundle")
        try:
            st = os.lstat(path)
        except OSError:
            raise PipelineError(f"{self.where}: {name} not found: the bundle is incomplete; copy the whole folder.") \
                from None
        if not stat.S_ISREG(st.st_mode) or (st.st_ino, st.st_size, st.st_mtime_ns) != self._stats.get(name):
            raise PipelineError(f"{self.where}: {name} changed while the bundle was being loaded")
        return path

    @property
    def uses_images(self) -> bool:
        return self.kind.images

    @property
    def uses_metadata(self) -> bool:
        return self.kind.metadata

    @property
    def features(self) -> list[str] | None:
        return (self.info.get("metadata") or {}).get("features")

    @property
    def imputation_means(self) -> dict:
        return (self.info.get("metadata") or {}).get("imputation_means") or {}

    @property
    def input_size(self) -> int | None:
        return (self.info.get("input") or {}).get("image_size")

    @property
    def decoding(self) -> Decoding:
        """How images are decoded for this model (skinlesion.images.Decoding): the bundle's `input` fields,
        the defaults where absent (bundles from before the options)."""
        return Decoding.of(self.info.get("input"))

    @property
    def decision(self) -> dict | None:
        return self.info.get("decision")

    @property
    def tta(self) -> str:
        """The test-time augmentation evaluate chose (`decision.tta`); none without a decision or the field."""
        return (self.decision or {}).get("tta") or "none"

    @property
    def weights(self) -> dict:
        """{"source": where the weights came from (RANDOM said there), "imagenet": bool, None without a backbone}"""
        return self.info.get("weights") or {}

    @property
    def trained_on(self) -> str:
        return (self.info.get("training_data") or {}).get("source", "unknown")

    @cached_property
    def model(self):
        path = self._model_path()
        if not self.kind.keras:  # model.npz: arrays read without unpickling, the estimator rebuilt from them
            meta = self.info["metadata"]
            return linear_model.load(path, f"{self.where}: {self.info['model_file']}", list(meta["features"]),
                                     len(self.task.classes), len(meta["columns"]))
        return self._load_keras(path)

    def _load_keras(self, path: Path):
        """The Keras model, in safe mode (no Lambda layer, no unknown class), checked against bundle.json."""
        import keras

        from . import models  # noqa: F401  registers the custom layers for loading

        name = self.info["model_file"]
        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # a damaged file, a safe-mode refusal, anything Keras raises: one line
            raise PipelineError(f"{self.where}: {name} cannot be loaded as a Keras model ({_one_line(exc)}); "
                                f"a bundle's model is loaded in safe mode only: {RETRAIN}") from None
        check_model(model, self.info, self.where)
        return model

    def metadata_matrix(self, table: pd.DataFrame | None) -> np.ndarray | None:
        return features.matrix(table, self.features) if self.uses_metadata else None

    def predict(self, table: pd.DataFrame | None = None, images: np.ndarray | None = None,
                tta: str = "none") -> np.ndarray:
        """Probabilities: (n,) of malignant for binary, (n, n_classes) for multiclass.

        tta "flips": the mean of the probabilities of the four flips of each image (identity, horizontal,
        vertical, both; the metadata unchanged); a model without images ignores it."""
        if tta not in TTA:
            raise PipelineError(f"test-time augmentation {tta!r}: expected one of {', '.join(TTA)}")
        if tta == "flips" and self.kind.keras and self.uses_images and images is not None:
            return np.mean([self._predict(table, flipped(images, k)) for k in range(len(FLIPS))], axis=0)
        return self._predict(table, images)

    def _predict(self, table: pd.DataFrame | None, images: np.ndarray | None) -> np.ndarray:
        meta = self.metadata_matrix(table)
        if not self.kind.keras:  # scikit-learn: a column per class (linear_model.AllClasses keeps absent ones)
            probs = np.asarray(self.model.predict_proba(meta), dtype=np.float64)
            return probs[:, 1] if self.task.binary else probs
        if self.uses_images and images is None:
            raise PipelineError(f"variant {self.name} needs images to score")
        inputs = [images, meta] if (self.uses_images and self.uses_metadata) else (images if self.uses_images
                                                                                    else meta)
        return self.task.probabilities(self.model.predict(inputs, batch_size=64, verbose=0))

    def complete(self, out: str | os.PathLike, decision: dict, extra: dict | None = None) -> Path:
        """Write the complete bundle to `out`: this model file (and seen.json) and manifest, with `decision` filled in and
        `files` recomputed. `extra` adds (or replaces) top-level manifest blocks, e.g. recalibrate's
        provenance. Nothing is written outside `out` (model_file is a plain name, checked on load)."""
        name = self._model_path().name
        info = {**self.info, **(extra or {}), "decision": decision, "model_file": name}
        with atomic_path(out, mark=MANIFEST) as tmp:
            tmp.mkdir(parents=True)
            target = tmp / name
            if target.parent != tmp:
                raise PipelineError(f"{self.where}: field 'model_file': {name} is not a plain file name")
            shutil.copyfile(self._model_path(), target)
            carried = [n for n in (SEEN,) if n in self.info["files"]]  # what the model saw goes with it
            for extra_file in carried:
                with _open_plain(self.root / extra_file, f"{self.where}: {extra_file}", MAX_FILE) as src, \
                        open(tmp / extra_file, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            info = {**info, "files": {}}
            info = seal(tmp, info)
            for copied in [name, *carried]:
                if info["files"].get(copied) != self.info["files"][copied]:
                    raise PipelineError(f"{self.where}: {copied} changed while it was copied to {out}")
            params.validate(info, origin=f"bundle {out}: {MANIFEST}", schema_name="bundle")
        return Path(out)


def check_model(model, info: dict, where: str) -> None:
    """A loaded Keras model against its bundle.json: its inputs (image size, metadata width), its output
    width (the task's), and a backbone sub-model exactly where the kind has one."""
    import keras

    kind, task = kinds.get(info["kind"]), tasks.get(info["task"])
    name = info["model_file"]
    if not isinstance(model, keras.Model):
        raise PipelineError(f"{where}: {name} is not a Keras model ({type(model).__name__})")

    def shape(t) -> tuple:
        return tuple(None if d is None else int(d) for d in t.shape)

    inputs = [shape(t) for t in model.inputs]
    expected = (["images"] if kind.images else []) + (["metadata"] if kind.metadata else [])
    if len(inputs) != len(expected):
        raise PipelineError(f"{where}: {name} takes {len(inputs)} input(s), but bundle.json's kind {kind.name} "
                            f"expects {len(expected)} ({', '.join(expected)})")
    for got, what in zip(inputs, expected):
        if what == "images":
            size = info["input"]["image_size"]
            if got[1:] != (size, size, 3):
                raise PipelineError(f"{where}: {name} takes images of shape {got[1:]}, but bundle.json's field "
                                    f"'input.image_size' is {size}: expected ({size}, {size}, 3)")
        else:
            width = len(info["metadata"]["columns"])
            if got[1:] != (width,):
                raise PipelineError(f"{where}: {name} takes metadata of shape {got[1:]}, but bundle.json's field "
                                    f"'metadata.features' makes {width} column(s): expected ({width},)")
    outputs = [shape(t) for t in model.outputs]
    if len(outputs) != 1 or outputs[0][1:] != (task.n_outputs,):
        raise PipelineError(f"{where}: {name} outputs {outputs if len(outputs) != 1 else outputs[0][1:]}, but "
                            f"bundle.json's field 'task' is {task.name}: expected ({task.n_outputs},) "
                            f"({', '.join(task.classes)})")
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if not kind.backbone and nested:
        raise PipelineError(f"{where}: {name} holds a sub-model ({nested[0]}, a pretrained backbone?), but "
                            f"bundle.json's field 'kind' is {kind.name}, which has none: expected a kind with a "
                            f"backbone (transfer, dual)")
    if kind.backbone and not any(n.startswith("backbone_") for n in nested):
        raise PipelineError(f"{where}: {name} has no backbone sub-model, but bundle.json's field 'kind' is "
                            f"{kind.name}: expected a model built on a backbone")
