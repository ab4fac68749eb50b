"""Table and figure of one PaCKD sweep (k, alpha and T, or feature set)."""

from pathlib import Path

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.plots import plot_sweep
from packd.tables import read_metrics, sweep_table, to_markdown

with logged_job(snakemake.log[0], "sweep"):
    table = sweep_table(
        read_metrics(snakemake.input.metrics),
        snakemake.wildcards.sweep,
        snakemake.params.variants,
    )
    write_text_atomic(snakemake.output.table, table.to_csv(index=False))
    write_text_atomic(snakemake.output.markdown, to_markdown(table))
    plot_sweep(table, snakemake.wildcards.sweep, Path(snakemake.output.figure))
