"""Inputs, labels and clustering features of one app, split by instr_id."""

from packd.joblog import logged_job
from packd.stages.data import build_dataset

with logged_job(snakemake.log[0], "build_dataset") as log:
    build_dataset(
        snakemake.input.trace,
        snakemake.params.dataset,
        seed=snakemake.params.seed,
        split_paths={split: snakemake.output[split] for split in ("train", "val", "test")},
        sizes_path=snakemake.output.sizes,
        log=log,
    )
