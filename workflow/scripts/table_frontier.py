"""F1 against real parameter count: the frontier table and its figure."""

from pathlib import Path

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.plots import plot_frontier
from packd.tables import frontier_table, read_metrics, to_markdown

with logged_job(snakemake.log[0], "table_frontier") as log:
    table = frontier_table(read_metrics(snakemake.input.metrics))
    write_text_atomic(snakemake.output.csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.md, to_markdown(table))
    plot_frontier(table, Path(snakemake.output.figure))
    log.info("\n%s", to_markdown(table))
