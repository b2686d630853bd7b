# The comparison of every variant: results/all.


rule compare:
    input:
        expand("results/variants/{variant}/evaluation.json", variant=VARIANTS),
        expand("results/variants/{variant}/predictions.csv", variant=VARIANTS),
        expand("results/variants/{variant}/figures", variant=VARIANTS),
        raw="data/raw",
        summary="data/interim/metadata_summary.json",
        code=stage_inputs("compare"),
    output:
        update(directory("results/all")),  # holds the committed metrics.csv: restored if the job fails
    params:
        p=P,
        cfg=stage_params("compare"),
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/compare.log",
    benchmark:
        runners.benchmark_file("compare")
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "skinlesion compare{params.p} --raw {input.raw} --metadata-summary {input.summary} --out {output} > {log} 2>&1"
