"""Training noise of the main table: compare runs of one config that differ only in `seed`.

Each run is a workflow folder (a clone) whose results/tables/main.csv is complete, e.g.

    git clone . ../seed2 && cd ../seed2 && snakemake --cores 2 --config seed=2
    python benchmarks_scripts/seed_noise.py . ../seed2

The seed drives the sampled subsets, k-means and every network's initialisation and batch order;
the traces (whose graphs have their own seeds under apps:) stay the same. Per comparison it prints
each run's mean difference over the app x arch cells, the spread across runs, and a t test of the
mean difference over all runs against the seed noise pooled over cells (p_value).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from packd.tables import seed_noise_table, to_markdown


def main(argv: list[str] | None = None) -> int:
    """Print the seed-noise table of the given runs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="workflow folders, one per seed")
    args = ap.parse_args(argv)
    tables = {}
    for folder in args.runs:
        path = folder / "results" / "tables" / "main.csv"
        if not path.is_file():
            ap.error(f"{path} not found: run the workflow there first")
        tables[folder.resolve().name] = pd.read_csv(path)
    print(to_markdown(seed_noise_table(tables)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
