"""Convert a user's ML-DPC load trace to the project's Parquet trace."""

from packd.joblog import logged_job
from packd.stages.traces import import_trace

with logged_job(snakemake.log[0], "import_trace") as log:
    import_trace(snakemake.input.trace, snakemake.output.trace, log=log)
