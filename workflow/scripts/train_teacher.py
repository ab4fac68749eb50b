"""Train one teacher: on one cluster's samples, or on the whole app (standard KD's teacher)."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.training import train_teacher

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "train_teacher") as log:
    on_cluster = hasattr(snakemake.input, "clusters")
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    train_teacher(
        cell=cell,
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        size=snakemake.params.size,
        train_config=snakemake.params.train,
        checkpoint_path=snakemake.output.checkpoint,
        clusters_path=snakemake.input.clusters if on_cluster else None,
        cluster_id=int(snakemake.wildcards.c) if on_cluster else None,
        lr_factor=snakemake.params.lr_factor,
        selection_path=snakemake.input.get("selection"),
        whole_app_teacher_path=snakemake.input.get("whole_app"),
        log=log,
    )
