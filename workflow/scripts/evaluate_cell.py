"""Every main-table model of one (seed, app, arch) cell: test metrics, sizes and latency."""

import torch

from packd.cell import Cell
from packd.joblog import logged_job
from packd.stages.evaluation import evaluate_cell

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "evaluate_cell") as log:
    models = snakemake.params.models
    cell = Cell(
        seed=snakemake.params.seed, app=snakemake.wildcards.app, arch=snakemake.wildcards.arch
    )
    evaluate_cell(
        cell=cell,
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        checkpoints_by_model={model: list(snakemake.input[model]) for model in models},
        out_paths=dict(zip(models, snakemake.output.metrics, strict=True)),
        clusters_path=snakemake.input.get("clusters"),
        latency_repeats=snakemake.params.latency_repeats,
        batch_size=snakemake.params.batch_size,
        device_name=snakemake.params.device,
        degree=snakemake.params.degree,
        log=log,
    )
