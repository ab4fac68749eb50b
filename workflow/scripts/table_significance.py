"""Paired-bootstrap intervals for the F1 differences between methods."""

from pathlib import Path

import numpy as np

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import significance_table, to_markdown

with logged_job(snakemake.log[0], "table_significance") as log:
    counts = {}
    for path in map(Path, snakemake.input.counts):
        app, arch, model = path.parts[-3], path.parts[-2], path.name.removesuffix(".counts.npz")
        with np.load(path, allow_pickle=False) as stored:
            counts[(app, arch, model)] = stored["counts"]
    table = significance_table(counts, n_draws=snakemake.params.draws, seed=snakemake.params.seed)
    write_text_atomic(snakemake.output.csv, table.to_csv(index=False))
    write_text_atomic(snakemake.output.md, to_markdown(table))
    log.info("\n%s", to_markdown(table))
