"""F1 against real parameter count: the frontier table, its figure and its page."""

from pathlib import Path

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.plots import plot_frontier
from packd.results_doc import (
    frontier_logs_and_benchmarks,
    render_frontier,
    run_time_figures,
)
from packd.tables import frontier_table, read_metrics, to_markdown

with logged_job(snakemake.log[0], "table_frontier") as log:
    table = frontier_table(read_metrics(snakemake.input.metrics), snakemake.params.models)
    write_text_atomic(snakemake.output.csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.md, to_markdown(table))
    plot_frontier(table, Path(snakemake.output.figure))
    # The target's own time: the jobs of the models that only the frontier trains
    logs, benchmarks = frontier_logs_and_benchmarks(
        list(Path("logs").rglob("*.log")),
        list(Path("benchmarks").rglob("*.tsv")),
        snakemake.params.frontier_only_models,
    )
    page = render_frontier(
        snakemake.params.config_name,
        table,
        *run_time_figures(logs, benchmarks),
    )
    write_text_atomic(snakemake.output.page, page)
    log.info("\n%s", to_markdown(table))
