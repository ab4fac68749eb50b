"""Train one replacement block on the teacher's input and output of that block."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.blockwise import distill_block

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "distill_block") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    distill_block(
        activations_dir=snakemake.input.activations,
        teacher_path=snakemake.input.teacher,
        cell=cell,
        index=int(snakemake.wildcards.block),
        replacement_size=snakemake.params.replacement_size,
        block_training=snakemake.params.block_training,
        checkpoint_path=snakemake.output.checkpoint,
        device=snakemake.params.device,
        log=log,
    )
