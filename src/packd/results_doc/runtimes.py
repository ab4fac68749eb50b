"""Run times from the job records (logs and Snakemake benchmarks), the jobs of each target,
and the README's run-time block spliced from the pages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from packd.methods import SweepVariant, variant_of


def _job_intervals(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path]
) -> list[tuple[float, float]]:
    """(start, end) of every job: its log is last written when it ends, and its benchmark
    gives its duration (0 without one)."""
    seconds = {
        _key(path, "benchmarks"): float(pd.read_csv(path, sep="\t")["s"].iloc[0])
        for path in benchmark_paths
    }
    intervals = []
    for path in log_paths:
        end = path.stat().st_mtime
        intervals.append((end - seconds.get(_key(path, "logs"), 0.0), end))
    return intervals


def _key(path: Path, folder: str) -> str:
    """A job's log or benchmark path without its folder and suffix: the same for both."""
    return path.with_suffix("").as_posix().split(f"{folder}/", 1)[-1]


def records_until(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path], cutoff: float
) -> tuple[list[Path], list[Path]]:
    """The logs last written at or before cutoff (a modification time), and their benchmarks:
    the jobs of a run whose last outputs were written at cutoff, without later targets' jobs."""
    logs = [path for path in log_paths if path.stat().st_mtime <= cutoff]
    keys = {_key(path, "logs") for path in logs}
    return logs, [path for path in benchmark_paths if _key(path, "benchmarks") in keys]


def run_wall_seconds(log_paths: Sequence[Path], benchmark_paths: Sequence[Path]) -> float:
    """Wall time from the first job's start to the last job's end. A run resumed after a pause
    counts the pause too."""
    intervals = _job_intervals(log_paths, benchmark_paths)
    if not intervals:
        return float("nan")
    return max(end for _, end in intervals) - min(start for start, _ in intervals)


def peak_concurrency(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path], min_seconds: float = 2.0
) -> int:
    """The most jobs that ran at once for at least min_seconds: the cores a run of one-thread
    jobs used. Shorter overlaps are clock slop: a log is written a moment after its job's
    benchmark stops timing."""
    events = []
    for start, end in _job_intervals(log_paths, benchmark_paths):
        if end > start:
            events += [(start, 1), (end, -1)]
    running = peak = 0
    previous = None
    for time, change in sorted(events):  # an end sorts before a start at the same instant
        if previous is not None and time - previous >= min_seconds:
            peak = max(peak, running)
        running += change
        previous = time
    return peak


def job_seconds(benchmark_paths: Sequence[Path]) -> float:
    """Sum of the jobs' own wall seconds (Snakemake benchmarks)."""
    return float(sum(pd.read_csv(path, sep="\t")["s"].iloc[0] for path in benchmark_paths))


def run_time_figures(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path]
) -> tuple[float, float, int]:
    """(wall seconds, the jobs' own seconds, most jobs at once) of a set of jobs: the figures
    run_time_line and the pages that carry it take."""
    return (
        run_wall_seconds(log_paths, benchmark_paths),
        job_seconds(benchmark_paths),
        peak_concurrency(log_paths, benchmark_paths),
    )


RUN_TIME_PREFIX = "- Run time of "
README_START = "<!-- run-times: written by `make results-doc` from the docs' pages -->"
README_END = "<!-- /run-times -->"


def run_time_line(
    target: str, wall_seconds: float, total_job_seconds: float, concurrency: int | None = None
) -> str:
    """One target's measured time, as the results pages and the README give it."""
    at_once = f", at most {concurrency} jobs at once" if concurrency else ""
    return (
        f"{RUN_TIME_PREFIX}`{target}`: {wall_seconds / 60:.1f} min from its first job's start "
        f"to its last job's end{at_once}; its jobs' own time adds up to "
        f"{total_job_seconds / 60:.1f} min."
    )


def _job_name_parts(path: Path) -> tuple[str, ...]:
    """A job record's folders and its job's name (a selection's <model>.select: the model)."""
    return (*path.parent.parts, path.stem.removesuffix(".select"))


def frontier_logs_and_benchmarks(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path], models: Sequence[str]
) -> tuple[list[Path], list[Path]]:
    """The logs and benchmarks of the jobs that only the frontier target runs (models: its
    models that the default run lacks, e.g. roast-x4): their learning-rate candidates
    (grid/<model>/lr*), selections (<model>.select), final students and evaluations, and the
    blockwise stage's jobs (logs/blockwise/..., the folder named after the blockwise model)."""
    names = set(models)

    def frontier_only(path: Path) -> bool:
        return any(part in names for part in _job_name_parts(path))

    return (
        [path for path in log_paths if frontier_only(path)],
        [path for path in benchmark_paths if frontier_only(path)],
    )


# A clustering's name in paths: feature set and k, e.g. a-k3 (results/clusters/.../a-k3.parquet)
CLUSTERING_NAME = re.compile(r"(?:^|[-/])(?P<name>[adi]-k\d+)$")


def sweep_logs_and_benchmarks(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path], default_clustering: str
) -> tuple[list[Path], list[Path]]:
    """The logs and benchmarks of the jobs that only the sweeps target runs: the sweep variants'
    students and evaluations, the clusterings other than the default one (`default_clustering`,
    e.g. a-k3) with their cluster teachers, and the sweep tables."""

    def sweep_only(path: Path) -> bool:
        # A variant's own jobs: its learning-rate candidates (grid/<variant>/lr*), its selection
        # (<variant>.select), its final student and its evaluation
        parts = _job_name_parts(path)
        if path.stem.startswith("sweep_") or any(
            isinstance(variant_of(part), SweepVariant) for part in parts
        ):
            return True
        names = [CLUSTERING_NAME.search(part) for part in (*path.parent.parts, path.stem)]
        return any(name and name["name"] != default_clustering for name in names)

    return (
        [path for path in log_paths if sweep_only(path)],
        [path for path in benchmark_paths if sweep_only(path)],
    )


def splice_run_times(readme: str, pages: Sequence[str]) -> str:
    """readme with the block between its run-time markers replaced by the pages' run-time
    lines (a README without the markers is an error: nothing would be updated)."""
    if README_START not in readme or README_END not in readme:
        raise ValueError(f"the README has no run-time block ({README_START} ... {README_END})")
    lines = [
        line for page in pages for line in page.splitlines() if line.startswith(RUN_TIME_PREFIX)
    ]
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_START + "\n" + "".join(line + "\n" for line in lines) + README_END + tail


def main(arguments: Sequence[str] | None = None) -> None:
    """`python -m packd.results_doc README.md PAGE...`: splice the pages' run times into the
    README (the Makefile's results-doc target)."""
    import sys

    readme, *pages = list(arguments if arguments is not None else sys.argv[1:])
    texts = [Path(page).read_text() for page in pages if Path(page).exists()]
    Path(readme).write_text(splice_run_times(Path(readme).read_text(), texts))
