"""The sweeps target's page: each sweep's F1 per setting and arch, and the target's own time."""

from pathlib import Path

import pandas as pd

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.results_doc import (
    render_sweeps,
    run_time_figures,
    sweep_logs_and_benchmarks,
)

with logged_job(snakemake.log[0], "sweeps_page") as log:
    tables = {
        sweep: pd.read_csv(path)
        for sweep, path in zip(snakemake.params.sweeps, snakemake.input.tables, strict=True)
    }
    # The target's own time: the jobs that only the sweeps run
    logs, benchmarks = sweep_logs_and_benchmarks(
        list(Path("logs").rglob("*.log")),
        list(Path("benchmarks").rglob("*.tsv")),
        snakemake.params.default_clustering,
    )
    page = render_sweeps(
        snakemake.params.config_name,
        tables,
        *run_time_figures(logs, benchmarks),
    )
    write_text_atomic(snakemake.output.page, page)
    log.info("%d sweep-only jobs\n%s", len(logs), page)
