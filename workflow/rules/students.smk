# Students: one small architecture per arch, trained three ways: PaCKD (each sample distilled from
# its own cluster's teacher), standard KD (one teacher for the whole app) and no KD (labels only).


rule train_student:
    input:
        unpack(get_student_inputs),
    output:
        checkpoint="results/students/seed{seed}/{app}/{arch}/{method}.pt",
    log:
        "logs/students/seed{seed}/{app}/{arch}/{method}.log",
    benchmark:
        "benchmarks/students/seed{seed}/{app}/{arch}/{method}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: get_train_threads()
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime("student"),
        gpu=get_gpus(),
    params:
        sizes=get_model_sizes,
        settings=get_method_settings_of_job,
        train=config["train"],
        seed=get_seed,
    script:
        "../scripts/train_student.py"
