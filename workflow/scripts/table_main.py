"""The main table (long form) and its wide summary with means and PaCKD's gains."""

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import main_summary, main_table, read_metrics, to_markdown

with logged_job(snakemake.log[0], "table_main") as log:
    table = main_table(read_metrics(snakemake.input.metrics))
    summary = main_summary(table)
    write_text_atomic(snakemake.output.main_csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.main_md, to_markdown(table))
    write_text_atomic(snakemake.output.summary_csv, summary.to_csv(index=False))
    write_text_atomic(snakemake.output.summary_md, to_markdown(summary))
    log.info("\n%s", to_markdown(summary))
