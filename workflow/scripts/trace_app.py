"""Trace one app (built-in kernel or any command) and write its LLC trace as Parquet."""

from packd.joblog import logged_job
from packd.stages.traces import trace_app

with logged_job(snakemake.log[0], "trace_app") as log:
    trace_app(
        source=snakemake.params.source,
        tracing=snakemake.params.tracing,
        cache_config=snakemake.params.cache,
        binary=snakemake.input.get("binary"),
        out_path=snakemake.output.trace,
        command_dir=snakemake.params.command_dir,
        versions=snakemake.input.get("versions"),
        log=log,
    )
