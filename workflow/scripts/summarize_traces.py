"""One summary row per app trace."""

from packd.joblog import logged_job
from packd.stages.traces import summarize_traces

with logged_job(snakemake.log[0], "summarize_traces") as log:
    summary = summarize_traces(snakemake.input.traces, snakemake.output.summary)
    log.info("\n%s", summary.to_string(index=False))
