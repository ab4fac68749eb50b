"""Test micro-F1 at the validation threshold, sizes and latency of one model."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.evaluation import evaluate

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "evaluate") as log:
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    evaluate(
        cell=cell,
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        checkpoint_paths=list(snakemake.input.checkpoints),
        out_path=snakemake.output.metrics,
        model_name=snakemake.wildcards.model,
        clusters_path=snakemake.input.clusters if hasattr(snakemake.input, "clusters") else None,
        latency_repeats=snakemake.params.latency_repeats,
        batch_size=snakemake.params.batch_size,
        device_name=snakemake.params.device,
        degree=snakemake.params.degree,
        log=log,
    )
