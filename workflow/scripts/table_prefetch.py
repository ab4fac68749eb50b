"""The prefetch table and its coverage-accuracy figure."""

from packd.joblog import logged_job
from packd.stages.prefetch import prefetch_outputs

with logged_job(snakemake.log[0], "table_prefetch") as log:
    prefetch_outputs(
        report_paths=snakemake.input.reports,
        metrics_paths=snakemake.input.metrics,
        csv_path=snakemake.output.csv,
        markdown_path=snakemake.output.md,
        figure_path=snakemake.output.figure,
        log=log,
    )
