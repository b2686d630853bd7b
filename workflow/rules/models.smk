# One training and one evaluation job per variant in params.yaml.

from skinlesion.kinds import uses_images


rule train:
    input:
        table="data/interim/metadata.parquet",
        shards="data/processed/shards",
        summary="data/interim/metadata_summary.json",
        code=stage_inputs("train"),
    output:
        directory("models/{variant}"),
    params:
        p=P,
        cfg=stage_params("train"),
    wildcard_constraints:
        variant="|".join(VARIANTS),
    threads: 2
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/train/{variant}.log",
    benchmark:
        runners.benchmark_file("train@{variant}")
    resources:
        mem_mb=8000,
        runtime=720,
        # one GPU for image models (cnn, transfer, dual), none for metadata models: the SLURM and
        # Kubernetes profiles request what a job declares; a local run is not limited by it.
        gpu=lambda wildcards: int(uses_images(config["variants"][wildcards.variant]["kind"])),
    shell:
        "skinlesion train{params.p} {wildcards.variant} --table {input.table} --shards {input.shards} "
        "--metadata-summary {input.summary} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        model="models/{variant}",
        table="data/interim/metadata.parquet",
        shards="data/processed/shards",
        external="data/external",
        code=stage_inputs("evaluate"),
    output:
        # update(): the committed baseline (in git, not only in DVC's cache) is backed up before the job
        # and restored if it fails, instead of deleted (dvc.yaml: persist)
        metrics=update("results/variants/{variant}/metrics.json"),
        evaluation=update("results/variants/{variant}/evaluation.json"),
        plots=update(directory("results/variants/{variant}/plots")),
        figures=directory("results/variants/{variant}/figures"),
        predictions="results/variants/{variant}/predictions.csv",
        bundle=directory("bundles/{variant}"),
    params:
        p=P,
        cfg=stage_params("evaluate"),
    wildcard_constraints:
        variant="|".join(VARIANTS),
    threads: 2
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/evaluate/{variant}.log",
    benchmark:
        runners.benchmark_file("evaluate@{variant}")
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=lambda wildcards: int(uses_images(config["variants"][wildcards.variant]["kind"])),
    shell:
        "skinlesion evaluate{params.p} {wildcards.variant} --model {input.model} --table {input.table} "
        "--shards {input.shards} --out results/variants/{wildcards.variant} --external {input.external} "
        "--bundle {output.bundle} > {log} 2>&1"
