# Data stages: source -> raw layout -> metadata table -> image shards; the external test sets.


rule fetch:
    input:
        code=stage_inputs("fetch"),
    output:
        directory("data/raw"),
    params:
        p=P,
        cfg=stage_params("fetch"),
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/fetch.log",
    benchmark:
        runners.benchmark_file("fetch")
    resources:
        mem_mb=2000,
        runtime=240,
    shell:
        "skinlesion fetch{params.p} --out {output} > {log} 2>&1"


rule metadata:
    input:
        raw="data/raw",
        code=stage_inputs("metadata"),
    output:
        table="data/interim/metadata.parquet",
        summary="data/interim/metadata_summary.json",
    params:
        p=P,
        cfg=stage_params("metadata"),
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/metadata.log",
    benchmark:
        runners.benchmark_file("metadata")
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "skinlesion metadata{params.p} --raw {input.raw} --out {output.table} > {log} 2>&1"


rule images:
    input:
        table="data/interim/metadata.parquet",
        raw="data/raw",
        code=stage_inputs("images"),
    output:
        directory("data/processed/shards"),
    params:
        p=P,
        cfg=stage_params("images"),
    threads: config["images"].get("workers", 1)
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/images.log",
    benchmark:
        runners.benchmark_file("images")
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "skinlesion images{params.p} --table {input.table} --raw {input.raw} --out {output} > {log} 2>&1"


rule external:
    input:
        summary="data/interim/metadata_summary.json",
        code=stage_inputs("external"),
    output:
        directory("data/external"),
    params:
        p=P,
        cfg=stage_params("external"),
    threads: config["images"].get("workers", 1)
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/external.log",
    benchmark:
        runners.benchmark_file("external")
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "skinlesion external{params.p} --metadata-summary {input.summary} --out {output} > {log} 2>&1"
