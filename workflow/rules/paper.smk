# Paper: every table (CSV + Markdown) and figure, each a rule output in the report.


rule table_main:
    input:
        metrics=get_main_metrics(),
        selections=get_selections(),
    output:
        main_csv=report(
            "results/tables/main.csv",
            caption="../report/main_table.rst",
            category="3. Tables",
        ),
        main_md="results/tables/main.md",
        summary_csv=report(
            "results/tables/main_summary.csv",
            caption="../report/main_summary.rst",
            category="3. Tables",
        ),
        summary_md="results/tables/main_summary.md",
        ceiling_csv=report(
            "results/tables/ceiling.csv",
            caption="../report/ceiling_table.rst",
            category="3. Tables",
        ),
        ceiling_md="results/tables/ceiling.md",
        selection_csv=report(
            "results/tables/selection.csv",
            caption="../report/selection.rst",
            category="3. Tables",
        ),
        selection_md="results/tables/selection.md",
    log:
        "logs/paper/table_main.log",
    benchmark:
        "benchmarks/paper/table_main.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/table_main.py"


rule table_compression:
    input:
        main="results/tables/main.csv",
    output:
        csv=report(
            "results/tables/compression.csv",
            caption="../report/compression_table.rst",
            category="3. Tables",
        ),
        md="results/tables/compression.md",
    log:
        "logs/paper/table_compression.log",
    benchmark:
        "benchmarks/paper/table_compression.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/table_compression.py"


rule table_significance:
    input:
        main="results/tables/main.csv",
    output:
        csv=report(
            "results/tables/significance.csv",
            caption="../report/significance_table.rst",
            category="3. Tables",
        ),
        md="results/tables/significance.md",
        noise_csv=report(
            "results/tables/seed_noise.csv",
            caption="../report/seed_noise.rst",
            category="3. Tables",
        ),
        noise_md="results/tables/seed_noise.md",
    log:
        "logs/paper/table_significance.log",
    benchmark:
        "benchmarks/paper/table_significance.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/table_significance.py"


rule figure_main:
    input:
        main="results/tables/main.csv",
    output:
        figure=report(
            "results/figures/main_f1.png",
            caption="../report/main_figure.rst",
            category="4. Figures",
        ),
    log:
        "logs/paper/figure_main.log",
    benchmark:
        "benchmarks/paper/figure_main.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/figure_main.py"


rule figure_training_curves:
    input:
        metrics=get_main_metrics(),
    output:
        figure=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="4. Figures",
        ),
    log:
        "logs/paper/figure_training_curves.log",
    benchmark:
        "benchmarks/paper/figure_training_curves.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/figure_training_curves.py"


rule sweep:
    input:
        metrics=get_sweep_metrics,
    output:
        table=report(
            "results/tables/sweep_{sweep}.csv",
            caption="../report/sweep_table.rst",
            category="5. Sweeps",
        ),
        markdown="results/tables/sweep_{sweep}.md",
        figure=report(
            "results/figures/f1_vs_{sweep}.png",
            caption="../report/sweep_figure.rst",
            category="5. Sweeps",
        ),
    log:
        "logs/paper/sweep_{sweep}.log",
    benchmark:
        "benchmarks/paper/sweep_{sweep}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        variants=get_sweep_variants_of_job,
    script:
        "../scripts/sweep.py"


rule sweeps_page:
    input:
        tables=expand("results/tables/sweep_{sweep}.csv", sweep=SWEEPS),
    output:
        page="results/sweeps.md",
    log:
        "logs/paper/sweeps_page.log",
    benchmark:
        "benchmarks/paper/sweeps_page.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config_name=get_config_name(),
        sweeps=SWEEPS,
        default_clustering=f"{config['cluster']['features']}-k{config['cluster']['k']}",
    script:
        "../scripts/sweeps_page.py"


rule sweeps:
    input:
        get_sweep_output(),
        "results/sweeps.md",


rule results_doc:
    input:
        main="results/tables/main.csv",
        main_summary="results/tables/main_summary.csv",
        significance="results/tables/significance.csv",
        ceiling="results/tables/ceiling.csv",
        learnability="results/tables/learnability.csv",
        selection="results/tables/selection.csv",
        compression="results/tables/compression.csv",
        prefetch="results/tables/prefetch.csv",
    output:
        doc=report(
            "results/results.md",
            caption="../report/results_doc.rst",
            category="3. Tables",
        ),
    log:
        "logs/paper/results_doc.log",
    benchmark:
        "benchmarks/paper/results_doc.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config_name=get_config_name(),
    script:
        "../scripts/results_doc.py"


# The rule graph of the README (docs/rulegraph.dot and .png); tests/test_docs.py fails when the
# committed one differs from the workflow's.
rule rulegraph:
    output:
        dot="docs/rulegraph.dot",
        png="docs/rulegraph.png",
    log:
        "logs/paper/rulegraph.log",
    benchmark:
        "benchmarks/paper/rulegraph.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        python=sys.executable,
    shell:
        "(PYTHONHASHSEED=0 {params.python} -m snakemake --rulegraph --nolock"
        " --configfile config.yaml --quiet all"
        " > {output.dot} && dot -Tpng -Gdpi=80 {output.dot} -o {output.png}) 2> {log}"


rule table_frontier:
    input:
        metrics=get_frontier_metrics(),
    output:
        csv=report(
            "results/tables/frontier.csv",
            caption="../report/frontier.rst",
            category="6. Frontier",
        ),
        md="results/tables/frontier.md",
        figure=report(
            "results/figures/frontier.png",
            caption="../report/frontier.rst",
            category="6. Frontier",
        ),
        page="results/frontier.md",
    log:
        "logs/paper/table_frontier.log",
    benchmark:
        "benchmarks/paper/table_frontier.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config_name=get_config_name(),
        models=get_frontier_variants(),
        frontier_only_models=[
            m for m in get_frontier_models() if m not in EVALUATED_MODELS
        ],
    script:
        "../scripts/table_frontier.py"


rule frontier:
    input:
        "results/tables/frontier.csv",
        "results/figures/frontier.png",
        "results/frontier.md",
