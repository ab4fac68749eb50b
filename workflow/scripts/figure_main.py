"""Bar chart of test micro-F1 per app, arch and method."""

from pathlib import Path

import pandas as pd

from packd.joblog import logged_job
from packd.plots import plot_main_f1

with logged_job(snakemake.log[0], "figure_main"):
    plot_main_f1(pd.read_csv(snakemake.input.main), Path(snakemake.output.figure))
