"""Address-over-time and delta-histogram figure of one app's trace."""

from pathlib import Path

from packd.joblog import logged_job
from packd.plots import plot_trace
from packd.trace_io import read_trace_parquet

with logged_job(snakemake.log[0], "plot_trace"):
    trace, _ = read_trace_parquet(Path(snakemake.input.trace))
    plot_trace(trace, title=snakemake.wildcards.app, path=Path(snakemake.output.figure))
