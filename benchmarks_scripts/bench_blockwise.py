"""Wall time of the blockwise block stage: the distill_block jobs of one (app, arch) with --cores 1
against --cores 2, and the sequential baseline rule (every block in one job).

The teacher and its block activations are built first and not timed; each timed run then removes
the block checkpoints and makes only them again. Prints Snakemake's wall time, the stage's span
(first block job's start to last block job's end, without Snakemake's start-up) and the jobs' own
seconds (from benchmarks/blockwise/). Runs in a scratch copy of the workflow, or in --workdir.
Usage: python benchmarks_scripts/bench_blockwise.py [--configfile tests/configs/tiny.yaml]
       [--app dpc] [--arch resnet] [--block-epochs 10] [--repeats 1] [--workdir DIR]
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
import yaml

from packd.benchpage import write_page
from packd.config import with_schema_defaults
from packd.plan import block_count
from packd.results_doc import run_wall_seconds

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
WORKFLOW_PARTS = ("Snakefile", "config.yaml", "config", "envs", "workflow", "profiles", "tests")
INCLUDE = 'include: "workflow/rules/blockwise.smk"'
BENCH_CONFIG = "bench_blockwise.yaml"
PAGE_NOTE = (
    "Each timed run removes the block checkpoints of one (app, arch) and makes them again: "
    "`parallel block jobs` are the independent distill_block jobs, `sequential baseline job` "
    "trains the same blocks one after another in one job. wall_s: Snakemake's wall time, its "
    "start-up (parsing, DAG) included; stage_s: the first block job's start to the last one's "
    "end (log times and benchmark durations); job_s_sum: the jobs' own seconds from their "
    "benchmark files. Every job pays Python and torch start-up (the parallel jobs' job_s_sum "
    "against the sequential job's seconds shows how much), so blocks that train for only a few "
    "seconds gain little from running side by side; see docs/blockwise.md."
)


def copy_workflow(workdir: Path) -> None:
    """The workflow's files in workdir, with the blockwise rules included."""
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, workdir / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, workdir / part)
    snakefile = workdir / "Snakefile"
    if INCLUDE not in snakefile.read_text():
        students = 'include: "workflow/rules/students.smk"\n'
        snakefile.write_text(snakefile.read_text().replace(students, students + INCLUDE + "\n"))


def write_bench_config(workdir: Path, configfile: str, block_epochs: int | None) -> dict:
    """The config, with the block epochs replaced when given, as workdir/BENCH_CONFIG."""
    config = yaml.safe_load((workdir / configfile).read_text())
    if block_epochs is not None:
        config.setdefault("blockwise", {}).setdefault("block", {})["epochs"] = block_epochs
    (workdir / BENCH_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def snakemake(workdir: Path, targets: list[str], cores: int) -> float:
    """Seconds for Snakemake to make targets (mtime triggers only: code edits force nothing;
    --notemp: the activations, temp() in the workflow, stay for the next timed run)."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-m", "snakemake", *targets, "--cores", str(cores),
            "--configfile", BENCH_CONFIG, "--rerun-triggers", "mtime", "--notemp", "--quiet",
        ],
        cwd=workdir,
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def job_seconds(workdir: Path, names: list[str]) -> float:
    """Sum of the jobs' own seconds in their Snakemake benchmark files."""
    return sum(pd.read_csv(workdir / name, sep="\t")["s"].iloc[0] for name in names)


def stage_seconds(workdir: Path, names: list[str]) -> float:
    """The jobs' span: the first one's start to the last one's end (names: benchmark files)."""
    benchmarks = [workdir / name for name in names]
    logs = [
        workdir / name.replace("benchmarks/", "logs/", 1).replace(".tsv", ".log") for name in names
    ]
    return run_wall_seconds(logs, benchmarks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configfile", default="tests/configs/tiny.yaml")
    parser.add_argument("--app", default="dpc")
    parser.add_argument("--arch", default="resnet")
    parser.add_argument("--block-epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="a workflow copy to run in")
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packd-bench-blockwise-") as scratch:
        workdir = arguments.workdir or Path(scratch)
        if arguments.workdir is None:
            copy_workflow(workdir)
        config = write_bench_config(workdir, arguments.configfile, arguments.block_epochs)
        settings = with_schema_defaults("blockwise", config.get("blockwise", {}), SCHEMA)
        app, arch = arguments.app, arguments.arch
        blocks = block_count(
            arch, config["models"][arch]["teacher"], settings["layers_per_block"][arch]
        )
        seed = (config.get("seeds") or [config["seed"]])[0]
        folder = f"results/blockwise/seed{seed}/{app}/{arch}"
        block_files = [f"{folder}/block{index}.pt" for index in range(blocks)]
        snakemake(workdir, [f"{folder}/activations"], cores=2)  # the teacher and its activations

        rows = []
        for repeat in range(arguments.repeats):
            for cores in (1, 2):
                for name in block_files:
                    (workdir / name).unlink(missing_ok=True)
                wall = snakemake(workdir, block_files, cores)
                benchmarks = [
                    f"benchmarks/blockwise/seed{seed}/{app}/{arch}/block{i}.tsv"
                    for i in range(blocks)
                ]
                rows.append(
                    (
                        "parallel block jobs",
                        cores,
                        repeat,
                        wall,
                        stage_seconds(workdir, benchmarks),
                        job_seconds(workdir, benchmarks),
                    )
                )
            shutil.rmtree(workdir / folder / "sequential", ignore_errors=True)
            wall = snakemake(workdir, [f"{folder}/sequential"], cores=1)
            benchmark = [f"benchmarks/blockwise/seed{seed}/{app}/{arch}/sequential.tsv"]
            rows.append(
                (
                    "sequential baseline job",
                    1,
                    repeat,
                    wall,
                    stage_seconds(workdir, benchmark),
                    job_seconds(workdir, benchmark),
                )
            )
        columns = ["stage", "cores", "repeat", "wall_s", "stage_s", "job_s_sum"]
        table = pd.DataFrame(rows, columns=columns)
        wall = table.groupby(["stage", "cores"])["wall_s"].mean()
        span = table.groupby(["stage", "cores"])["stage_s"].mean()
        parallel = "parallel block jobs"
        printed = "\n".join(
            [
                f"{app}/{arch}: {blocks} blocks, {settings['block']['epochs']} epochs each, "
                f"at most {settings['max_samples']['train']} training samples",
                table.to_string(index=False, float_format=lambda seconds: f"{seconds:.2f}"),
                "",
                f"speed-up, --cores 2 against --cores 1: "
                f"{span[parallel, 1] / span[parallel, 2]:.2f}x (mean stage spans), "
                f"{wall[parallel, 1] / wall[parallel, 2]:.2f}x (mean Snakemake wall times)",
                f"speed-up, block jobs on --cores 2 against the sequential job: "
                f"{span['sequential baseline job', 1] / span[parallel, 2]:.2f}x (stage spans), "
                f"{wall['sequential baseline job', 1] / wall[parallel, 2]:.2f}x (wall times)",
            ]
        )
        print(printed)
        if arguments.markdown:
            write_page(arguments.markdown, "Blockwise block stage: wall time", PAGE_NOTE, printed)


if __name__ == "__main__":
    main()
