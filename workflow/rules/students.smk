# Students, baselines and compressed models: every trained method chooses its learning rate on
# the first seed's validation from the same grid as the whole-app teacher (train.lr_grid);
# later seeds train at that choice. The frequency baseline has nothing to tune (one candidate).


rule train_student_candidate:
    input:
        unpack(get_student_inputs),
    output:
        checkpoint="results/students/seed{seed}/{app}/{arch}/grid/{method}/lr{factor}.pt",
    log:
        "logs/students/seed{seed}/{app}/{arch}/grid/{method}/lr{factor}.log",
    benchmark:
        "benchmarks/students/seed{seed}/{app}/{arch}/grid/{method}/lr{factor}.tsv"
    wildcard_constraints:
        seed=str(SELECTION_SEED),
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
        lr_factor=get_lr_factor,
        chosen_on_seed=None,
    script:
        "../scripts/train_student.py"


rule select_student:
    input:
        candidates=get_student_candidates,
    output:
        checkpoint="results/students/seed{seed}/{app}/{arch}/{method}.pt",
        selection="results/students/seed{seed}/{app}/{arch}/{method}.selection.json",
    log:
        "logs/students/seed{seed}/{app}/{arch}/{method}.select.log",
    benchmark:
        "benchmarks/students/seed{seed}/{app}/{arch}/{method}.select.tsv"
    wildcard_constraints:
        seed=str(SELECTION_SEED),
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        factors=get_student_lr_factors,
    script:
        "../scripts/select_candidate.py"


rule train_student:
    input:
        unpack(get_student_inputs),
        chosen=get_chosen_student_selection,
    output:
        checkpoint="results/students/seed{seed}/{app}/{arch}/{method}.pt",
        selection="results/students/seed{seed}/{app}/{arch}/{method}.selection.json",
    log:
        "logs/students/seed{seed}/{app}/{arch}/{method}.log",
    benchmark:
        "benchmarks/students/seed{seed}/{app}/{arch}/{method}.tsv"
    wildcard_constraints:
        seed=alternatives([str(seed) for seed in SEEDS[1:]]),
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
        lr_factor=None,
        chosen_on_seed=SELECTION_SEED,
    script:
        "../scripts/train_student.py"
