# Parallel blockwise distillation: the whole-app teacher's block-boundary activations once, one
# independent job per replacement block, then the blocks assembled and fine-tuned end to end
# (on labels, or with PaCKD's cluster-teacher soft targets).


rule teacher_block_activations:
    input:
        unpack(get_dataset_splits),
        teacher="results/teachers/seed{seed}/{app}/{arch}/all.pt",
    output:
        # The run's largest intermediate, read only by the block jobs: deleted once they are
        # done (docs/blockwise.md); --notemp keeps it.
        activations=temp(
            directory("results/blockwise/seed{seed}/{app}/{arch}/activations")
        ),
    log:
        "logs/blockwise/seed{seed}/{app}/{arch}/activations.log",
    benchmark:
        "benchmarks/blockwise/seed{seed}/{app}/{arch}/activations.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=20,
        gpu=get_gpus(),
    params:
        layers_per_block=get_layers_per_block,
        max_samples=BLOCKWISE["max_samples"],
        seed=get_seed,
        device=config["train"]["device"],
    script:
        "../scripts/teacher_block_activations.py"


rule distill_block:
    input:
        activations="results/blockwise/seed{seed}/{app}/{arch}/activations",
        teacher="results/teachers/seed{seed}/{app}/{arch}/all.pt",
    output:
        checkpoint="results/blockwise/seed{seed}/{app}/{arch}/block{block}.pt",
    log:
        "logs/blockwise/seed{seed}/{app}/{arch}/block{block}.log",
    benchmark:
        "benchmarks/blockwise/seed{seed}/{app}/{arch}/block{block}.tsv"
    wildcard_constraints:
        block=r"\d+",
    priority: get_block_priority
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_block_runtime,
        gpu=get_gpus(),
    params:
        replacement_size=get_replacement_size,
        block_training=BLOCKWISE["block"],
        seed=get_seed,
        device=config["train"]["device"],
    script:
        "../scripts/distill_block.py"


rule assemble_blockwise:
    input:
        unpack(get_blockwise_inputs),
    output:
        checkpoint="results/blockwise/seed{seed}/{app}/{arch}/{method}.pt",
    log:
        "logs/blockwise/seed{seed}/{app}/{arch}/{method}.log",
    benchmark:
        "benchmarks/blockwise/seed{seed}/{app}/{arch}/{method}.tsv"
    wildcard_constraints:
        method=alternatives(BLOCKWISE_METHODS),
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_fine_tune_runtime,
        gpu=get_gpus(),
    params:
        replacement_size=get_replacement_size,
        settings=get_method_settings_of_job,
        train=config["train"],
        fine_tune_epochs=BLOCKWISE["fine_tune"]["epochs"],
        seed=get_seed,
    script:
        "../scripts/assemble_blockwise.py"


# The baseline of the speed comparison (benchmarks_scripts/bench_blockwise.py), not in `all`:
# the same blocks, one after another in one job.
rule blockwise_sequential:
    input:
        get_blockwise_sequential_output(),


rule distill_blocks_sequentially:
    input:
        activations="results/blockwise/seed{seed}/{app}/{arch}/activations",
        teacher="results/teachers/seed{seed}/{app}/{arch}/all.pt",
    output:
        checkpoints=directory("results/blockwise/seed{seed}/{app}/{arch}/sequential"),
    log:
        "logs/blockwise/seed{seed}/{app}/{arch}/sequential.log",
    benchmark:
        "benchmarks/blockwise/seed{seed}/{app}/{arch}/sequential.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=get_train_mem_mb,
        runtime=get_sequential_runtime,
        gpu=get_gpus(),
    params:
        replacement_size=get_replacement_size,
        block_training=BLOCKWISE["block"],
        seed=get_seed,
        device=config["train"]["device"],
    script:
        "../scripts/distill_blocks_sequentially.py"
