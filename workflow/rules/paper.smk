# Paper: every table (CSV + Markdown) and figure, each a rule output in the report.


rule table_main:
    input:
        metrics=get_main_metrics(),
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
        counts=get_main_counts(),
    output:
        csv=report(
            "results/tables/significance.csv",
            caption="../report/significance_table.rst",
            category="3. Tables",
        ),
        md="results/tables/significance.md",
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
    params:
        seed=config["seed"],
        draws=1000,
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
    script:
        "../scripts/sweep.py"


rule sweeps:
    input:
        get_sweep_output(),
