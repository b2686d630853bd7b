# The comparison of every variant: results/all.


rule compare:
    input:
        expand("results/variants/{variant}/metrics.json", variant=VARIANTS),
        expand("results/variants/{variant}/predictions.csv", variant=VARIANTS),
    output:
        directory("results/all"),
    params:
        p=P,
        cfg=stage_params("compare"),
    conda:
        "../envs/skinlesion.yaml"
    log:
        "logs/compare.log",
    benchmark:
        "logs/benchmarks/compare.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "skinlesion compare{params.p} --out {output} 2> {log}"
