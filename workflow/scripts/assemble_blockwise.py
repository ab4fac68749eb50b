"""Assemble the trained replacement blocks into a student and fine-tune it end to end."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.blockwise import AssemblySettings, assemble_blockwise

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "assemble_blockwise") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    settings = AssemblySettings(
        method=snakemake.wildcards.method,
        method_settings=snakemake.params.settings,
        replacement_size=snakemake.params.replacement_size,
        train_config=snakemake.params.train,
        fine_tune_epochs=snakemake.params.fine_tune_epochs,
    )
    assemble_blockwise(
        cell=cell,
        settings=settings,
        teacher_path=snakemake.input.cut_teacher,
        block_paths=list(snakemake.input.blocks),
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        checkpoint_path=snakemake.output.checkpoint,
        teacher_paths=list(snakemake.input.teachers)
        if hasattr(snakemake.input, "teachers")
        else [],
        clusters_path=snakemake.input.clusters if hasattr(snakemake.input, "clusters") else None,
        log=log,
    )
