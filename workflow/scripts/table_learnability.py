"""The learnability check: per cell, the teacher's gaps to the bit-frequency baseline and its
no-KD student, how often its top-k differs from the baseline's, the cells collapsed to the label
prior and those whose top-k is the prior's (each one a warning in the log)."""

import pandas as pd

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import (
    collapsed_cells,
    learnability_markdown,
    learnability_summary,
    learnability_table,
    prior_top_k_cells,
    to_markdown,
)

with logged_job(snakemake.log[0], "table_learnability") as log:
    table = learnability_table(pd.read_csv(snakemake.input.main))
    write_text_atomic(snakemake.output.csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.md, learnability_markdown(table))
    log.info("\n%s", to_markdown(learnability_summary(table)))
    for missing in sorted({name for names in table["missing"] for name in names.split()}):
        log.warning("%s is missing from this run: its learnability figures are NaN", missing)
    for row in collapsed_cells(table).itertuples():
        log.warning(
            "COLLAPSED TO THE LABEL PRIOR: seed %s, %s/%s: %s (see results/tables/learnability.md)",
            row.seed,
            row.app,
            row.arch,
            row.collapse_reason,
        )
    for row in prior_top_k_cells(table).itertuples():
        log.warning(
            "TOP-K IS THE LABEL PRIOR'S: seed %s, %s/%s: the frequency baseline's top-k on %.1f%% "
            "of test samples (see results/tables/learnability.md)",
            row.seed,
            row.app,
            row.arch,
            100 * (1 - row.teacher_top_k_differs),
        )
