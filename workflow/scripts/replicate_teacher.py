"""Train a later seed's whole-app teacher at the learning rate chosen on the first seed."""

import torch

from packd.joblog import logged_job
from packd.stages.training import replicate_teacher

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "replicate_teacher") as log:
    replicate_teacher(
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        arch=snakemake.wildcards.arch,
        size=snakemake.params.size,
        train_config=snakemake.params.train,
        seed=snakemake.params.seed,
        checkpoint_path=snakemake.output.checkpoint,
        selection_path=snakemake.output.selection,
        chosen_selection_path=snakemake.input.chosen,
        chosen_on_seed=snakemake.params.chosen_on_seed,
        app=snakemake.wildcards.app,
        log=log,
    )
