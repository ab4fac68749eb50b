"""Assemble the trained replacement blocks into a student and fine-tune it end to end."""

import torch

from packd.joblog import logged_job
from packd.stages.blockwise import assemble_blockwise

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "assemble_blockwise") as log:
    assemble_blockwise(
        teacher_path=snakemake.input.cut_teacher,
        block_paths=list(snakemake.input.blocks),
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        arch=snakemake.wildcards.arch,
        replacement_size=snakemake.params.replacement_size,
        settings=snakemake.params.settings,
        train_config=snakemake.params.train,
        fine_tune_epochs=snakemake.params.fine_tune_epochs,
        seed=snakemake.params.seed,
        checkpoint_path=snakemake.output.checkpoint,
        app=snakemake.wildcards.app,
        method=snakemake.wildcards.method,
        teacher_paths=list(snakemake.input.teachers)
        if hasattr(snakemake.input, "teachers")
        else [],
        clusters_path=snakemake.input.clusters if hasattr(snakemake.input, "clusters") else None,
        log=log,
    )
