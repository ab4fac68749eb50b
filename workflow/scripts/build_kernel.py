"""Compile the graph kernels (sancov-instrumented or plain)."""

from pathlib import Path

from packd.joblog import logged_job
from packd.stages.traces import build_kernel

with logged_job(snakemake.log[0], "build_kernel") as log:
    build_kernel(
        Path(snakemake.input[0]).parent,
        snakemake.output.binary,
        snakemake.output.versions,
        variant=snakemake.wildcards.variant,
    )
    log.info("built %s", snakemake.output.binary)
