"""Prefetch files and LLC replays of every model and classic prefetcher of one app and seed."""

import torch

from packd.joblog import logged_job
from packd.stages.prefetch import PrefetchSettings, prefetch_app

torch.set_num_threads(snakemake.threads)
with logged_job(snakemake.log[0], "prefetch_app") as log:
    keys = snakemake.params.prefetch_keys
    models = [key for key in keys if not key.startswith("classic/")]
    settings = PrefetchSettings(
        degree=snakemake.params.degree,
        distance=snakemake.params.distance,
        max_accesses=snakemake.params.max_accesses,
        device_name=snakemake.params.device,
        prefetch_filter=snakemake.params.prefetch_filter,
        filter_window=snakemake.params.filter_window,
    )
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
        centroids_path=snakemake.input.centroids,
        settings=settings,
        seed=snakemake.params.seed,
        log=log,
    )
