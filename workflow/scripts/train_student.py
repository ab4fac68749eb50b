"""Train one model of a method: a learning-rate candidate (first seed) or a later seed's
replicate at the first seed's choice."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.training import train_student

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "train_student") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    train_student(
        cell=cell,
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        sizes=snakemake.params.sizes,
        settings=snakemake.params.settings,
        train_config=snakemake.params.train,
        checkpoint_path=snakemake.output.checkpoint,
        method=snakemake.wildcards.method,
        teacher_paths=list(snakemake.input.get("teachers", [])),
        clusters_path=snakemake.input.get("clusters"),
        lr_factor=snakemake.params.lr_factor,
        chosen_selection_path=snakemake.input.get("chosen"),
        selection_path=snakemake.output.get("selection"),
        chosen_on_seed=snakemake.params.chosen_on_seed,
        log=log,
    )
