# Evaluate: micro-F1 on test at the threshold chosen on validation (and the authors' protocol,
# labelled), average precision, top-k at the prefetch degree, size and CPU latency of every model.
# One job per (seed, app, arch) scores all of the cell's models on data loaded once.


rule evaluate_cell:
    input:
        unpack(get_evaluate_cell_inputs),
    output:
        metrics=expand(
            "results/metrics/seed{{seed}}/{{app}}/{{arch}}/{model}.json",
            model=EVALUATED_MODELS,
        ),
    log:
        "logs/evaluate/seed{seed}/{app}/{arch}.log",
    benchmark:
        "benchmarks/evaluate/seed{seed}/{app}/{arch}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=30,
        gpu=get_gpus(),
    params:
        models=EVALUATED_MODELS,
        latency_repeats=config["evaluate"]["latency_repeats"],
        device=config["train"]["device"],
        batch_size=1024,
        degree=get_prefetch_degree(),
        seed=get_seed,
    script:
        "../scripts/evaluate_cell.py"


# The sweeps' PaCKD variants, the frontier's other budgets and the registry's models outside the
# main table (the frontier's hashed and blockwise models), one job each.
rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        metrics="results/metrics/seed{seed}/{app}/{arch}/{model}.json",
    log:
        "logs/evaluate/seed{seed}/{app}/{arch}/{model}.log",
    benchmark:
        "benchmarks/evaluate/seed{seed}/{app}/{arch}/{model}.tsv"
    wildcard_constraints:
        model=get_single_model_regex(),
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=20,
        gpu=get_gpus(),
    params:
        latency_repeats=config["evaluate"]["latency_repeats"],
        device=config["train"]["device"],
        batch_size=1024,
        degree=get_prefetch_degree(),
        seed=get_seed,
    script:
        "../scripts/evaluate.py"


# The learnability check: per cell, the teacher against the bit-frequency baseline and its no-KD
# student, and how often its top-k bits differ from the baseline's; a cell collapsed to the label
# prior warns in the log (as table_main warns of a teacher that is not the ceiling).
rule table_learnability:
    input:
        main="results/tables/main.csv",
    output:
        csv=report(
            "results/tables/learnability.csv",
            caption="../report/learnability_table.rst",
            category="3. Tables",
        ),
        md="results/tables/learnability.md",
    log:
        "logs/paper/table_learnability.log",
    benchmark:
        "benchmarks/paper/table_learnability.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/table_learnability.py"
