# Teachers: one large model per cluster (independent jobs, run in parallel), and one trained on
# the whole app for standard KD.


rule train_teacher:
    input:
        unpack(get_dataset_splits),
        clusters="results/clusters/{app}/{features}-k{k}.parquet",
    output:
        checkpoint="results/teachers/{app}/{arch}/{features}-k{k}/c{c}.pt",
    log:
        "logs/teachers/{app}/{arch}/{features}-k{k}/c{c}.log",
    benchmark:
        "benchmarks/teachers/{app}/{arch}/{features}-k{k}/c{c}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: get_train_threads()
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime("teacher"),
        gpu=get_gpus(),
    params:
        size=get_teacher_size,
        train=config["train"],
        seed=config["seed"],
    script:
        "../scripts/train_teacher.py"


use rule train_teacher as train_full_teacher with:
    input:
        unpack(get_dataset_splits),
    output:
        checkpoint="results/teachers/{app}/{arch}/all.pt",
    log:
        "logs/teachers/{app}/{arch}/all.log",
    benchmark:
        "benchmarks/teachers/{app}/{arch}/all.tsv"
