"""Train one model of a method: a learning-rate candidate (first seed) or a later seed's
replicate at the first seed's choice."""

import torch

from packd.joblog import logged_job
from packd.stages.training import train_student

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "train_student") as log:
    train_student(
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        arch=snakemake.wildcards.arch,
        sizes=snakemake.params.sizes,
        settings=snakemake.params.settings,
        train_config=snakemake.params.train,
        seed=snakemake.params.seed,
        checkpoint_path=snakemake.output.checkpoint,
        app=snakemake.wildcards.app,
        method=snakemake.wildcards.method,
        teacher_paths=list(snakemake.input.get("teachers", [])),
        clusters_path=snakemake.input.get("clusters"),
        lr_factor=snakemake.params.lr_factor,
        chosen_selection_path=snakemake.input.get("chosen"),
        selection_path=snakemake.output.get("selection"),
        chosen_on_seed=snakemake.params.chosen_on_seed,
        log=log,
    )
