"""Wall time of the trace stage (`snakemake traces`) of a config, from scratch, in a scratch copy.

Prints the total and each job's seconds from Snakemake's own benchmark files.
Usage: python benchmarks_scripts/bench_trace_stage.py [--configfile config.yaml] [--cores 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configfile", default="config.yaml")
    parser.add_argument("--cores", default="2")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packd-bench-traces-") as scratch:
        workdir = Path(scratch)
        for part in ("Snakefile", "config.yaml", "config", "envs", "workflow", "profiles", "tests"):
            source = REPO / part
            if source.is_dir():
                shutil.copytree(source, workdir / part)
            else:
                shutil.copy2(source, workdir / part)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "traces",
                "--cores",
                arguments.cores,
                "--configfile",
                arguments.configfile,
                "--quiet",
            ],
            cwd=workdir,
            check=True,
        )
        total = time.perf_counter() - started
        for benchmark in sorted((workdir / "benchmarks/traces").glob("*.tsv")):
            seconds = pd.read_csv(benchmark, sep="\t")["s"].iloc[0]
            print(f"{benchmark.stem:30s} {seconds:7.2f} s")
        summary = pd.read_csv(workdir / "results/traces/summary.csv")
        print(
            summary[["app", "accesses", "llc_misses", "distinct_pcs", "distinct_pages"]].to_string(
                index=False
            )
        )
    print(
        f"trace stage of {arguments.configfile} on {arguments.cores} cores: {total:.1f} s "
        "(target: under 120 s)"
    )


if __name__ == "__main__":
    main()
