# Evaluate: micro-F1 on test at the threshold chosen on validation (and the authors' protocol,
# labelled), precision, recall, size and CPU latency of every model.


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        metrics="results/metrics/{app}/{arch}/{model}.json",
        counts="results/metrics/{app}/{arch}/{model}.counts.npz",
    log:
        "logs/evaluate/{app}/{arch}/{model}.log",
    benchmark:
        "benchmarks/evaluate/{app}/{arch}/{model}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=20,
        gpu=get_gpus(),
    params:
        latency_repeats=config["evaluate"].get("latency_repeats", 200),
        device=config["train"].get("device", "auto"),
        batch_size=1024,
    script:
        "../scripts/evaluate.py"
