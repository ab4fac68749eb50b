"""Prefetch files and LLC replays of every model and classic prefetcher of one app and seed."""

import torch

from packd.joblog import logged_job
from packd.stages.prefetch import prefetch_app

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "prefetch_app") as log:
    keys = snakemake.params.prefetch_keys
    models = [key for key in keys if not key.startswith("classic/")]
    prefetch_app(
        trace_path=snakemake.input.trace,
        dataset_config=snakemake.params.dataset,
        cache_config=snakemake.params.cache,
        model_checkpoints={
            key: list(snakemake.input[f"checkpoints_{key.replace('/', '__')}"]) for key in models
        },
        model_metrics={key: snakemake.input[f"metrics_{key.replace('/', '__')}"] for key in models},
        out_paths={
            key: paths
            for key, paths in zip(
                keys,
                zip(snakemake.output.prefetches, snakemake.output.reports, strict=True),
                strict=True,
            )
        },
        clustering={
            **snakemake.params.cluster,
            "train": snakemake.input.train,
            "test": snakemake.input.test,
            "clusters": snakemake.input.clusters,
        },
        degree=snakemake.params.degree,
        distance=snakemake.params.distance,
        max_accesses=snakemake.params.max_accesses,
        device_name=snakemake.params.device,
        seed=snakemake.params.seed,
        prefetch_filter=snakemake.params.prefetch_filter,
        filter_window=snakemake.params.filter_window,
        log=log,
    )
