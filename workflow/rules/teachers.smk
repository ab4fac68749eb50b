# Teachers: the whole-app teacher's learning rate is chosen on the first seed's validation from
# the grid every trained method shares (train.lr_grid); later seeds train their whole-app teacher
# at that choice. Then one large model per cluster (independent jobs, run in parallel): by default
# the whole-app teacher fine-tuned on its cluster, or trained from scratch
# (train.cluster_teachers).


rule train_teacher:
    input:
        unpack(get_dataset_splits),
        unpack(get_whole_app_teacher_to_warm_start),
        clusters="results/clusters/seed{seed}/{app}/{features}-k{k}.parquet",
        selection="results/teachers/seed{seed}/{app}/{arch}/selection.json",
    output:
        checkpoint="results/teachers/seed{seed}/{app}/{arch}/{features}-k{k}/c{c}.pt",
    log:
        "logs/teachers/seed{seed}/{app}/{arch}/{features}-k{k}/c{c}.log",
    benchmark:
        "benchmarks/teachers/seed{seed}/{app}/{arch}/{features}-k{k}/c{c}.tsv"
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
        seed=get_seed,
        lr_factor=None,
    script:
        "../scripts/train_teacher.py"


use rule train_teacher as train_teacher_candidate with:
    input:
        unpack(get_dataset_splits),
    output:
        checkpoint="results/teachers/seed{seed}/{app}/{arch}/grid/lr{factor}.pt",
    log:
        "logs/teachers/seed{seed}/{app}/{arch}/grid/lr{factor}.log",
    benchmark:
        "benchmarks/teachers/seed{seed}/{app}/{arch}/grid/lr{factor}.tsv"
    params:
        size=get_teacher_size,
        train=config["train"],
        seed=get_seed,
        lr_factor=get_lr_factor,


rule select_teacher:
    input:
        candidates=get_teacher_candidates,
    output:
        checkpoint="results/teachers/seed{seed}/{app}/{arch}/all.pt",
        selection="results/teachers/seed{seed}/{app}/{arch}/selection.json",
    log:
        "logs/teachers/seed{seed}/{app}/{arch}/select.log",
    benchmark:
        "benchmarks/teachers/seed{seed}/{app}/{arch}/select.tsv"
    wildcard_constraints:
        seed=str(SELECTION_SEED),
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        factors=get_lr_factors(),
    script:
        "../scripts/select_candidate.py"


rule replicate_teacher:
    input:
        unpack(get_dataset_splits),
        chosen=get_chosen_selection,
    output:
        checkpoint="results/teachers/seed{seed}/{app}/{arch}/all.pt",
        selection="results/teachers/seed{seed}/{app}/{arch}/selection.json",
    log:
        "logs/teachers/seed{seed}/{app}/{arch}/replicate.log",
    benchmark:
        "benchmarks/teachers/seed{seed}/{app}/{arch}/replicate.tsv"
    wildcard_constraints:
        seed=alternatives([str(seed) for seed in SEEDS[1:]]),
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
        seed=get_seed,
        chosen_on_seed=SELECTION_SEED,
    script:
        "../scripts/replicate_teacher.py"
