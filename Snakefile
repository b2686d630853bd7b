# skinlesion: ISIC dermoscopy images -> trained classifiers -> evaluation reports.
#
#   snakemake --cores 8 results/all          # the whole pipeline on params.yaml
#   snakemake --profile workflow/profiles/slurm results/all
#
# Every rule calls one `skinlesion <stage>` command; dvc.yaml calls the same commands
# (tests/test_dag_agreement.py fails when the two runners disagree).

from snakemake.utils import min_version

min_version("8.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/all",
    default_target: True
