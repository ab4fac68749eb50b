"""The baseline: every replacement block of one teacher trained one after another in one job."""

import torch

from packd.joblog import logged_job
from packd.stages.blockwise import distill_blocks_sequentially

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "distill_blocks_sequentially") as log:
    distill_blocks_sequentially(
        activations_dir=snakemake.input.activations,
        teacher_path=snakemake.input.teacher,
        arch=snakemake.wildcards.arch,
        replacement_size=snakemake.params.replacement_size,
        block_training=snakemake.params.block_training,
        seed=snakemake.params.seed,
        checkpoint_dir=snakemake.output.checkpoints,
        app=snakemake.wildcards.app,
        device=snakemake.params.device,
        log=log,
    )
