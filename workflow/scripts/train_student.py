"""Train one student with PaCKD, standard KD or no KD."""

import torch

from packd.joblog import logged_job
from packd.stages.training import train_student

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "train_student") as log:
    with_teachers = hasattr(snakemake.input, "teachers")
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
        teacher_paths=list(snakemake.input.teachers)
        if hasattr(snakemake.input, "teachers")
        else [],
        clusters_path=snakemake.input.clusters if hasattr(snakemake.input, "clusters") else None,
        log=log,
    )
