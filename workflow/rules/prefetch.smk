# Prefetch: every model's and every classic prefetcher's prefetches on an app's test range (whole
# and in order, not the dataset's random test subset), replayed through the config's LLC, and the
# table that sets prefetch coverage beside test micro-F1. One job per (seed, app): the stream,
# the samples and the cluster routes (from the cluster rule's saved centroids) are built once for
# all of its models. With evaluate.prefetch_filter (default) models and classic prefetchers alike
# pass through the same filter (packd.prefetch.filter_prefetches) before their prefetch files are
# written.


rule prefetch_app:
    input:
        unpack(get_prefetch_app_inputs),
    output:
        prefetches=get_prefetch_app_files(".txt"),
        reports=get_prefetch_app_files(".json"),
    log:
        "logs/prefetch/seed{seed}/{app}.log",
    benchmark:
        "benchmarks/prefetch/seed{seed}/{app}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=get_gpus(),
    params:
        prefetch_keys=get_prefetch_keys(),
        dataset=config["dataset"],
        cache=config["cache"],
        degree=get_prefetch_degree(),
        distance=PREFETCH_DISTANCE,
        prefetch_filter=config["evaluate"]["prefetch_filter"],
        filter_window=config["evaluate"]["prefetch_filter_window"],
        max_accesses=get_prefetch_max_accesses(),
        device=config["train"]["device"],
        seed=get_seed,
    script:
        "../scripts/prefetch_app.py"


rule table_prefetch:
    input:
        reports=get_prefetch_reports(),
        metrics=get_main_metrics(),
    output:
        csv=report(
            "results/tables/prefetch.csv",
            caption="../report/prefetch_table.rst",
            category="3. Tables",
        ),
        md="results/tables/prefetch.md",
        figure=report(
            "results/figures/prefetch.png",
            caption="../report/prefetch_figure.rst",
            category="4. Figures",
        ),
    log:
        "logs/prefetch/table_prefetch.log",
    benchmark:
        "benchmarks/prefetch/table_prefetch.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/table_prefetch.py"
