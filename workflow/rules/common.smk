# Config validation and helpers shared by all rules.

import yaml
from pathlib import Path

from snakemake.utils import validate

from skinlesion.params import schema_path
from skinlesion.stages import values


validate(config, schema=str(schema_path()))

VARIANTS = list(config["variants"])


def _params_file():
    """The params file the stage commands read: a config file whose content is exactly the config
    (params.yaml, or the file given with --configfile ... --replace-workflow-config), else the merged
    config written once under .snakemake/ (so --config overrides and merged --configfile work)."""
    candidates = [str(f) for f in workflow.overwrite_configfiles] + [str(f) for f in workflow.configfiles]
    for path in candidates:
        if Path(path).exists() and yaml.safe_load(Path(path).read_text()) == config:
            return path
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


def stage_params(stage):
    """The params.yaml values `stage` reads (skinlesion.stages.STAGE_PARAMS, shared with dvc.yaml)."""
    return lambda wildcards: values(config, stage, **dict(wildcards.items()))
