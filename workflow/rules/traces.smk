# Traces: compile the graph kernels, trace each app (or import its ML-DPC trace), filter the loads
# through the cache hierarchy to the LLC stream, and summarise.


rule build_kernel:
    input:
        get_kernel_sources(),
    output:
        binary="results/bin/graphkernels-{variant}",
        versions="results/bin/graphkernels-{variant}.json",
    log:
        "logs/traces/build_kernel-{variant}.log",
    benchmark:
        "benchmarks/traces/build_kernel-{variant}.tsv"
    conda:
        "../../envs/traces.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/build_kernel.py"


rule trace_app:
    input:
        unpack(get_kernel_binary),
    output:
        trace="results/traces/{app}.parquet",
    log:
        "logs/traces/trace_app-{app}.log",
    benchmark:
        "benchmarks/traces/trace_app-{app}.tsv"
    wildcard_constraints:
        app=get_traced_app_regex(),
    conda:
        "../../envs/traces.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        source=get_app_source,
        command_dir=get_command_dir(),
        tracing=config["tracing"],
        cache=config["cache"],
    script:
        "../scripts/trace_app.py"


rule import_trace:
    input:
        trace=get_import_path,
    output:
        trace="results/traces/{app}.parquet",
    log:
        "logs/traces/import_trace-{app}.log",
    benchmark:
        "benchmarks/traces/import_trace-{app}.tsv"
    wildcard_constraints:
        app=get_imported_app_regex(),
    conda:
        "../../envs/traces.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/import_trace.py"


rule summarize_traces:
    input:
        traces=expand("results/traces/{app}.parquet", app=APPS),
    output:
        summary=report(
            "results/traces/summary.csv",
            caption="../report/trace_summary.rst",
            category="1. Traces",
        ),
    log:
        "logs/traces/summarize_traces.log",
    benchmark:
        "benchmarks/traces/summarize_traces.tsv"
    conda:
        "../../envs/traces.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/summarize_traces.py"


rule plot_trace:
    input:
        trace="results/traces/{app}.parquet",
    output:
        figure=report(
            "results/traces/{app}.png",
            caption="../report/trace_figure.rst",
            category="1. Traces",
            subcategory="{app}",
        ),
    log:
        "logs/traces/plot_trace-{app}.log",
    benchmark:
        "benchmarks/traces/plot_trace-{app}.tsv"
    conda:
        "../../envs/traces.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_trace.py"


rule traces:
    input:
        get_trace_output(),
