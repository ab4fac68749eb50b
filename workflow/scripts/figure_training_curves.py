"""Validation F1 per epoch of every model in the main comparison."""

from pathlib import Path

from packd.joblog import logged_job
from packd.plots import plot_training_curves
from packd.tables import read_metrics

with logged_job(snakemake.log[0], "figure_training_curves"):
    plot_training_curves(read_metrics(snakemake.input.metrics), Path(snakemake.output.figure))
