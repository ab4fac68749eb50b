# Students: one small architecture per arch, trained three ways: PaCKD (each sample distilled from
# its own cluster's teacher), standard KD (one teacher for the whole app) and no KD (labels only).


rule train_student:
    input:
        unpack(get_student_inputs),
    output:
        checkpoint="results/students/{app}/{arch}/{method}.pt",
    log:
        "logs/students/{app}/{arch}/{method}.log",
    benchmark:
        "benchmarks/students/{app}/{arch}/{method}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: get_train_threads()
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime("student"),
        gpu=get_gpus(),
    params:
        size=get_student_size,
        settings=get_method_settings_of_job,
        train=config["train"],
        seed=config["seed"],
    script:
        "../scripts/train_student.py"
