"""Train a later seed's whole-app teacher at the learning rate chosen on the first seed."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.training import replicate_teacher

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "replicate_teacher") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    replicate_teacher(
        cell=cell,
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        size=snakemake.params.size,
        train_config=snakemake.params.train,
        checkpoint_path=snakemake.output.checkpoint,
        selection_path=snakemake.output.selection,
        chosen_selection_path=snakemake.input.chosen,
        chosen_on_seed=snakemake.params.chosen_on_seed,
        log=log,
    )
