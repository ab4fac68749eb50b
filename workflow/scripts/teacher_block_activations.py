"""The whole-app teacher's activations at its block boundaries, one file per boundary."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.blockwise import save_teacher_block_activations

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "teacher_block_activations") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    save_teacher_block_activations(
        teacher_path=snakemake.input.teacher,
        split_paths={"train": snakemake.input.train, "val": snakemake.input.val},
        cell=cell,
        layers_per_block=snakemake.params.layers_per_block,
        max_samples=snakemake.params.max_samples,
        activations_dir=snakemake.output.activations,
        device=snakemake.params.device,
        log=log,
    )
