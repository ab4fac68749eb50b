"""F1 differences between methods, tested with the seed as the unit of replication."""

import pandas as pd

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import significance_table, to_markdown

with logged_job(snakemake.log[0], "table_significance") as log:
    table = significance_table(pd.read_csv(snakemake.input.main))
    write_text_atomic(snakemake.output.csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.md, to_markdown(table))
    log.info("\n%s", to_markdown(table))
