# Config validation and helpers shared by all rules.

import sys
import yaml
from pathlib import Path

from skinlesion import runners
from skinlesion.errors import PipelineError
from skinlesion.params import read_yaml, validate
from skinlesion.stages import STAGE_PARAMS, file_deps, values


# Snakemake's own YAML reading keeps the last of a key given twice; DVC and the stage commands refuse such a
# file (skinlesion.params.read_yaml names the key and both lines), and so does this, before anything runs.
CONFIG_FILES = {str(f): read_yaml(f) for f in [*workflow.overwrite_configfiles, *workflow.configfiles]
                if Path(f).exists()}
# The stage commands' own check: one line naming the key, the value and what is allowed (snakemake.utils.validate
# prints ten). It sets no defaults, so the config stays exactly the params file the stage commands read.
try:
    validate(config, origin=next((f for f, c in CONFIG_FILES.items() if c == config),
                                 " + ".join([*CONFIG_FILES, "--config"])))
except PipelineError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)

VARIANTS = list(config["variants"])
CHECKOUT = Path(workflow.basedir).parent  # workflow/Snakefile: the repository holding src/ and weights/
# A plain `snakemake` after a SIGKILLed one starts instead of stopping at the dead run's lock.
runners.release_stale_lock()


def _params_file():
    """The params file the stage commands read: a config file whose content is exactly the config
    (params.yaml, or the file given with --configfile ... --replace-workflow-config), else the merged
    config written once under .snakemake/ (so --config overrides and merged --configfile work)."""
    for path, content in CONFIG_FILES.items():
        if content == config:
            # the same file however it was named (params.yaml, ./params.yaml, an absolute path)
            return "params.yaml" if Path(path).resolve() == Path("params.yaml").resolve() else path
    merged = Path(".snakemake/skinlesion/params.merged.yaml")
    merged.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(config), sort_keys=False)
    if not merged.exists() or merged.read_text() != text:
        merged.write_text(text)
    return str(merged)


PARAMS_FILE = _params_file()
# Stage commands default to params.yaml; pass --params only when another file is in use, so the
# commands read exactly as in dvc.yaml.
P = "" if PARAMS_FILE == "params.yaml" else f" --params {PARAMS_FILE}"
# What dvc.lock says each stage ran with: only meaningful when both runners read params.yaml.
DVC_PARAMS = runners.dvc_lock_params() if PARAMS_FILE == "params.yaml" else {}


def _marker(stage, **wildcards):
    name = runners.job_name(stage, wildcards)
    return runners.params_marker(name, values(config, stage, **wildcards),
                                 DVC_PARAMS.get(name) if PARAMS_FILE == "params.yaml" else None)


# Every job's params marker, written before the DAG is built. Written from inside the input functions, a
# marker made after Snakemake had listed its folder was reported missing (MissingInputException for
# `snakemake -n bundles/logreg bundles/cnn` on a fresh clone; the same command passed the second time).
PER_VARIANT = ("train", "evaluate")  # the rules with a {variant} wildcard
MARKERS = {runners.job_name(stage, w): _marker(stage, **w)
           for stage in STAGE_PARAMS
           for w in ([{"variant": v} for v in VARIANTS] if stage in PER_VARIANT else [{}])}


def stage_params(stage):
    """The params.yaml values `stage` reads (skinlesion.stages.STAGE_PARAMS, shared with dvc.yaml)."""
    return lambda wildcards: values(config, stage, **dict(wildcards.items()))


def stage_inputs(stage):
    """What a job depends on besides its data: the package code its command runs and the files it
    reads (skinlesion.stages.file_deps, the same files dvc.yaml lists) and its params marker
    (skinlesion.runners.params_marker: reruns the job after a params edit even when dvc repro,
    not Snakemake, made its outputs)."""

    def inputs(wildcards):
        marker = MARKERS[runners.job_name(stage, dict(wildcards.items()))]
        # the code of the checkout this Snakefile belongs to (as dvc.yaml lists it), relative to where the
        # run is (experiments/*)
        files = file_deps(stage, root=Path.cwd(), checkout=CHECKOUT) + [marker]
        # local(): the code is in the checkout (and the marker is runner state), never in a storage
        # provider, even where the profile sends every other file there (kubernetes + S3)
        return [local(f) for f in files]

    return inputs
