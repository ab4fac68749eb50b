"""Train one replacement block on the teacher's input and output of that block."""

import torch

from packd.joblog import logged_job
from packd.stages.blockwise import distill_block

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "distill_block") as log:
    distill_block(
        activations_dir=snakemake.input.activations,
        teacher_path=snakemake.input.teacher,
        arch=snakemake.wildcards.arch,
        index=int(snakemake.wildcards.block),
        replacement_size=snakemake.params.replacement_size,
        block_training=snakemake.params.block_training,
        seed=snakemake.params.seed,
        checkpoint_path=snakemake.output.checkpoint,
        app=snakemake.wildcards.app,
        device=snakemake.params.device,
        log=log,
    )
