# Dataset: segmented-address inputs, delta-bitmap labels and the clustering features, split by
# instr_id into train, validation (the end of the training range) and test.


rule build_dataset:
    input:
        trace="results/traces/{app}.parquet",
    output:
        train="results/datasets/{app}/train.npz",
        val="results/datasets/{app}/val.npz",
        test="results/datasets/{app}/test.npz",
        sizes="results/datasets/{app}/sizes.json",
    log:
        "logs/dataset/build_dataset-{app}.log",
    benchmark:
        "benchmarks/dataset/build_dataset-{app}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        dataset=config["dataset"],
        seed=config["seed"],
    script:
        "../scripts/build_dataset.py"
