"""The results document: every number in it is read from the run's tables and job records.

The README links to docs/results.md, which is this document as written by the `results_doc`
rule for the default config (`make results-doc` copies it there), so no figure is typed by hand.

- :mod:`packd.results_doc.results_page`: the default target's page and its sections;
- :mod:`packd.results_doc.target_pages`: the frontier and sweeps targets' pages;
- :mod:`packd.results_doc.runtimes`: run times from the logs and benchmarks, each target's jobs,
  and the README's run-time block (`python -m packd.results_doc`);
- :mod:`packd.results_doc.formatting`: how the pages write numbers.
"""

from packd.results_doc.results_page import render_results
from packd.results_doc.runtimes import (
    CLUSTERING_NAME,
    README_END,
    README_START,
    RUN_TIME_PREFIX,
    frontier_logs_and_benchmarks,
    job_seconds,
    main,
    peak_concurrency,
    records_until,
    run_time_figures,
    run_time_line,
    run_wall_seconds,
    splice_run_times,
    sweep_logs_and_benchmarks,
)
from packd.results_doc.target_pages import (
    SWEEP_SETTINGS,
    render_frontier,
    render_sweeps,
    sweep_summary,
)

__all__ = [
    "CLUSTERING_NAME",
    "README_END",
    "README_START",
    "RUN_TIME_PREFIX",
    "SWEEP_SETTINGS",
    "frontier_logs_and_benchmarks",
    "job_seconds",
    "main",
    "peak_concurrency",
    "records_until",
    "render_frontier",
    "render_results",
    "render_sweeps",
    "run_time_figures",
    "run_time_line",
    "run_wall_seconds",
    "splice_run_times",
    "sweep_logs_and_benchmarks",
    "sweep_summary",
]
