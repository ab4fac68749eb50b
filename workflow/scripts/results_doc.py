"""The results document, written from the run's tables and job records."""

from pathlib import Path

import pandas as pd

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.results_doc import (
    records_until,
    render_results,
    run_time_figures,
)

with logged_job(snakemake.log[0], "results_doc"):
    tables = {name: pd.read_csv(path) for name, path in snakemake.input.items()}
    own = Path(snakemake.log[0]).resolve()
    # The default target's jobs: those done by the time its tables were written, so that a
    # later `frontier` or `sweeps` run does not count (the 1 s covers coarse file clocks)
    cutoff = max(Path(path).stat().st_mtime for path in snakemake.input) + 1.0
    logs, benchmarks = records_until(
        [path for path in Path("logs").rglob("*.log") if path.resolve() != own],
        list(Path("benchmarks").rglob("*.tsv")),
        cutoff,
    )
    document = render_results(
        snakemake.params.config_name,
        tables,
        *run_time_figures(logs, benchmarks),
    )
    write_text_atomic(snakemake.output.doc, document)
