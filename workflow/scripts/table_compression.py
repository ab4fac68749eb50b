"""Parameters, bytes, compression ratio and CPU latency of every model."""

import pandas as pd

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import compression_table, to_markdown

with logged_job(snakemake.log[0], "table_compression"):
    table = compression_table(pd.read_csv(snakemake.input.main))
    write_text_atomic(snakemake.output.csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.md, to_markdown(table, digits=2))
