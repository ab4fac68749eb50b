"""The baseline: every replacement block of one teacher trained one after another in one job."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.blockwise import distill_blocks_sequentially

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "distill_blocks_sequentially") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    distill_blocks_sequentially(
        activations_dir=snakemake.input.activations,
        teacher_path=snakemake.input.teacher,
        cell=cell,
        replacement_size=snakemake.params.replacement_size,
        block_training=snakemake.params.block_training,
        checkpoint_dir=snakemake.output.checkpoints,
        device=snakemake.params.device,
        log=log,
    )
