"""The results document: every number in it is read from the run's tables and job records.

The README links to docs/results.md, which is this document as written by the `results_doc`
rule for the default config (`make results-doc` copies it there), so no figure is typed by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from packd.methods import SWEEP_METHOD, method_label, method_rank
from packd.tables import (
    COLLAPSE_F1_MARGIN,
    COLLAPSE_TOP_K_DIFFERS,
    collapsed_cells,
    learnability_summary,
)


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _fmt_sd(value: float, digits: int = 4) -> str:
    """An sd to digits decimals, or in scientific notation when it is not 0 but would read so."""
    if value is not None and pd.notna(value) and 0 < abs(value) < 0.5 * 10**-digits:
        return f"{value:.1e}"
    return _fmt(value, digits)


def _fmt_p(value: float) -> str:
    """A p-value to 3 decimals, or to 2 significant digits below 0.01 (0.0014 is not 0.001)."""
    if value is not None and pd.notna(value) and value < 1e-2:
        return f"{value:.1e}"
    return _fmt(value, 3)


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


def _summary_rows(summary: pd.DataFrame, methods: Sequence[str]) -> list[str]:
    header = "| cells | " + " | ".join(method_label(m) for m in methods) + " |"
    lines = [header, "|---|" + "---|" * len(methods)]
    for _, row in summary[summary["app"] == "mean"].iterrows():
        cells = []
        for method in methods:
            sd = row.get(f"{method}_sd")
            cells.append(f"{_fmt(row[method])} ± {_fmt(sd)}" if pd.notna(sd) else _fmt(row[method]))
        lines.append(f"| mean, {row['arch']} | " + " | ".join(cells) + " |")
    return lines


def render_results(
    config_name: str,
    tables: Mapping[str, pd.DataFrame],
    wall_seconds: float,
    total_job_seconds: float,
    concurrency: int | None = None,
) -> str:
    """The Markdown results document of one run.

    tables: main, main_summary, significance, ceiling, selection, compression, prefetch
    and learnability (the CSVs of results/tables/; without learnability, no learnability check).
    """
    main, summary = tables["main"], tables["main_summary"]
    validation = main[main["protocol"] == "validation"]
    methods = sorted(validation["method"].unique(), key=method_rank)
    seeds = sorted(validation["seed"].unique())
    params = validation.groupby(["arch", "method"])["params"].mean().unstack()
    lines = [
        "# Results",
        "",
        f"Written by the `results_doc` rule from the tables of a run of `{config_name}` "
        "(nothing here is typed by hand). Test micro-F1 at the threshold chosen on validation "
        "(the headline protocol); mean over the (app, arch) cells of each seed, then mean ± sd "
        f"over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}).",
        "",
        f"- Apps: {', '.join(sorted(validation['app'].unique()))}; archs: "
        f"{', '.join(sorted(validation['arch'].unique()))}.",
        run_time_line("all (the default target)", wall_seconds, total_job_seconds, concurrency),
        "",
        "## Main table (means over cells, then over seeds)",
        "",
        *_summary_rows(summary, methods),
        "",
        "## Sizes (parameters, mean over apps)",
        "",
        "| arch | " + " | ".join(method_label(m) for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for arch, row in params.iterrows():
        lines.append(f"| {arch} | " + " | ".join(f"{row[m]:,.0f}" for m in methods) + " |")
    if "teacher" in params.columns and "no_kd" in params.columns:
        ratio = params["teacher"] / params["no_kd"]
        lines += [
            "",
            "Teacher / student parameters: "
            + ", ".join(f"{arch} {value:.0f}x" for arch, value in ratio.items())
            + ".",
        ]
    significance = tables["significance"]
    if len(significance):
        tests = int(significance["holm_tests"].max())
        lines += [
            "",
            "## Significance (the seed is the unit of replication)",
            "",
            "Paired t tests over n seeds (n - 1 degrees of freedom) of each seed's mean F1 "
            "difference over cells; the 95% interval is the t interval of the mean difference. "
            f"p is raw; Holm p is Holm's step-down adjustment over all {tests} tests of this "
            "table (every comparison and arch group with a test); significant: Holm p <= 0.05. "
            "No test "
            "(n/a) with one seed, or with the same difference in every seed (sd 0: t undefined).",
            "",
            "| comparison | arch | n | mean difference | sd over seeds | 95% interval | p "
            "| Holm p | significant |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for _, row in significance.iterrows():
            interval = f"[{_fmt(row['ci95_low'])}, {_fmt(row['ci95_high'])}]"
            seeds = int(row["seeds"])
            if pd.notna(row["p_value"]):
                p, holm = _fmt_p(row["p_value"]), _fmt_p(row["p_holm"])
                verdict = "yes" if bool(row["significant_holm"]) else "no"
            else:
                p = holm = verdict = "n/a (1 seed)" if seeds < 2 else "n/a (sd 0)"
            lines.append(
                f"| {row['comparison']} | {row['arch']} | {seeds} | "
                f"{_fmt(row['mean_f1_difference'])} | {_fmt_sd(row['sd_over_seeds'])} | "
                f"{interval} | {p} | {holm} | {verdict} |"
            )
    ceiling = tables["ceiling"]
    if len(ceiling):
        failed = ceiling[~ceiling["teacher_is_ceiling"].astype(bool)]
        lines += ["", "## Are the teachers the ceiling?", ""]
        lines.append(
            f"On validation, the whole-app teacher beats the bit-frequency baseline, the plain "
            f"MLP and its own no-KD student in {len(ceiling) - len(failed)} of {len(ceiling)} "
            "(seed, app, arch) cells."
        )
        for _, row in failed.iterrows():
            lines.append(
                f"- **Not the ceiling**: seed {row['seed']}, {row['app']}/{row['arch']}: not above "
                f"{row['teacher_not_above']} (teacher {_fmt(row['teacher_val_f1'])})."
            )
    learnability = tables.get("learnability")
    if learnability is not None:
        lines += _learnability_lines(learnability, methods)
    selection = tables.get("selection")
    if selection is not None and len(selection):
        lines += _selection_lines(selection)
    gap = _gap_line(validation)
    if gap:
        lines += ["", gap]
    prefetch = tables.get("prefetch")
    if prefetch is not None and len(prefetch):
        lines += [
            "",
            "## Prefetching (coverage and accuracy on each app's test range, mean over seeds)",
            "",
            "| app | arch | best model by coverage | coverage | accuracy | best classic "
            "| coverage | F1 ranking holds for coverage |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (app, arch), rows in prefetch.groupby(["app", "arch"]):
            models = rows[rows["kind"] == "model"]
            classic = rows[rows["kind"] == "classic"]
            best = models.loc[models["coverage"].idxmax()]
            best_classic = classic.loc[classic["coverage"].idxmax()] if len(classic) else None
            lines.append(
                f"| {app} | {arch} | {method_label(best['name'])} | {_fmt(best['coverage'], 3)} | "
                f"{_fmt(best['accuracy'], 3)} | "
                f"{best_classic['name'] if best_classic is not None else 'n/a'} | "
                f"{_fmt(best_classic['coverage'], 3) if best_classic is not None else 'n/a'} | "
                f"{models['f1_ranking_holds'].iloc[0]} |"
            )
    lines += [
        "",
        "Per-cell tables: `results/tables/main_summary.md`, `significance.md`, `ceiling.md`, "
        "`learnability.md`, `selection.md`, `compression.md`, `prefetch.md`.",
        "",
    ]
    return "\n".join(lines)


def _selection_lines(selection: pd.DataFrame) -> list[str]:
    """Every method's learning-rate choice on the first seed: the factor kept per (app, arch),
    each candidate's validation F1 beside it."""
    first = selection[selection["seed"] == selection["chosen_on_seed"]]
    lines = [
        "",
        "## Learning rates chosen on validation (first seed; later seeds train at the choice)",
        "",
        "| app | arch | method | factors tried: best validation F1 | chosen |",
        "|---|---|---|---|---|",
    ]
    for (app, arch, method), rows in first.groupby(["app", "arch", "method"], sort=False):
        tried = ", ".join(
            f"x{row['lr_factor']:g}: {_fmt(row['val_f1'])}" for _, row in rows.iterrows()
        )
        chosen = rows[rows["chosen"].astype(bool)]["lr_factor"]
        label = f"x{chosen.iloc[0]:g}" if len(chosen) else "n/a"
        lines.append(f"| {app} | {arch} | {method_label(method)} | {tried} | {label} |")
    return lines


def _learnability_lines(learnability: pd.DataFrame, methods: Sequence[str]) -> list[str]:
    """The learnability check's section: the per-cell gaps and top-k comparison, their means, a
    loud line naming every cell collapsed to the label prior (or one saying none is), and which
    method or figure the run lacks."""
    lines = [
        "",
        "## Learnability check: did the models learn more than the label prior?",
        "",
    ]
    if learnability.empty:
        return [*lines, "**No learnability check**: the run has no whole-app teacher."]
    lines.append(
        "Per (seed, app, arch) cell: the whole-app teacher's test F1 (validation protocol) minus "
        "the bit-frequency baseline's and minus its no-KD student's (the same on validation F1), "
        "and the share of test samples whose top-k bits differ from the frequency baseline's, "
        "one fixed set for every sample. A cell has collapsed to the label prior when the "
        f"teacher's top-k differs on fewer than {COLLAPSE_TOP_K_DIFFERS:.0%} of the samples or "
        f"its F1 beats the frequency baseline's by less than {COLLAPSE_F1_MARGIN}: it cannot "
        "tell a trained model from the prior, so its distillation comparisons say nothing."
    )
    absent = [method for method in ("frequency", "no_kd") if method not in methods]
    for method in absent:
        lines.append(
            f"- **No `{method}` model in this run**: the teacher - {method_label(method)} gaps "
            "are n/a."
        )
    if learnability["teacher_top_k_differs"].isna().any():
        lines.append(
            "- **Top-k comparison missing** for some cells: their metrics were written without "
            "`top_k_differs_from_frequency` (before the check existed); re-evaluate them."
        )
    collapsed = collapsed_cells(learnability)
    cells = len(learnability)
    lines.append("")
    if len(collapsed):
        named = "; ".join(
            f"seed {row['seed']} {row['app']}/{row['arch']} ({_text(row['collapse_reason'])})"
            for _, row in collapsed.iterrows()
        )
        lines.append(
            f"**{len(collapsed)} of {cells} cells have collapsed to the label prior**: {named}."
        )
    unchecked = (
        learnability["teacher_top_k_differs"].isna()
        & learnability["teacher_minus_frequency_f1"].isna()
    ).sum()
    if unchecked:
        lines += [""] if len(collapsed) else []
        lines.append(
            f"**{unchecked} of {cells} cells could not be checked**: neither the top-k comparison "
            "nor the frequency baseline's F1 is there."
        )
    elif not len(collapsed):
        lines.append(f"None of the {cells} cells has collapsed to the label prior.")
    lines += [
        "",
        "| seed | cell | teacher - frequency F1 | teacher - no KD F1 | teacher - frequency "
        "val F1 | teacher - no KD val F1 | teacher top-k differs | no KD top-k differs "
        "| collapsed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    columns = [
        "teacher_minus_frequency_f1",
        "teacher_minus_no_kd_f1",
        "teacher_minus_frequency_val_f1",
        "teacher_minus_no_kd_val_f1",
    ]
    flagged = set(collapsed.index)
    for index, row in learnability.iterrows():
        values = [_fmt(row[column]) for column in columns]
        values += [_fmt_share(row["teacher_top_k_differs"]), _fmt_share(row["no_kd_top_k_differs"])]
        verdict = "**yes**" if index in flagged else "no"
        lines.append(
            f"| {row['seed']} | {row['app']}/{row['arch']} | "
            + " | ".join(values)
            + f" | {verdict} |"
        )
    summary = learnability_summary(learnability).set_index("measure")
    means = [
        f"{_fmt(summary.loc[column, 'mean_over_cells'])} ({int(summary.loc[column, 'cells'])})"
        for column in columns
    ]
    share = summary.loc["teacher_top_k_differs"]
    lines.append(
        "| mean (cells) | | "
        + " | ".join(means)
        + f" | {_fmt_share(share['mean_over_cells'])} ({int(share['cells'])}) | | {len(collapsed)} "
        f"of {cells} |"
    )
    return lines


def _fmt_share(value: float) -> str:
    """A fraction as a percentage to one decimal, or n/a."""
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def _text(value: object) -> str:
    """A text cell read back from CSV: an empty one is NaN."""
    return "" if value is None or pd.isna(value) else str(value)


def _gap_line(validation: pd.DataFrame) -> str:
    """The teacher - no-KD gap and the PaCKD student's share of it, from the per-seed means."""
    wide = validation.pivot_table(index="seed", columns="method", values="f1", aggfunc="mean")
    if not {"teacher", "no_kd"} <= set(wide.columns):
        return ""
    gap = wide["teacher"] - wide["no_kd"]
    text = (
        f"Teacher - no-KD student gap (mean over cells): {_fmt(gap.mean())} "
        f"(per seed: {', '.join(_fmt(value) for value in gap)})."
    )
    if "packd" in wide.columns and np.all(gap != 0):
        closed = (wide["packd"] - wide["no_kd"]) / gap
        text += f" The PaCKD student closes {100 * closed.mean():.0f}% of it."
    return text


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


def frontier_logs_and_benchmarks(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path], models: Sequence[str]
) -> tuple[list[Path], list[Path]]:
    """The logs and benchmarks of the jobs that only the frontier target runs: the students of
    its other budgets and their evaluations (named after models, e.g. roast-x4)."""
    names = set(models)
    return (
        [path for path in log_paths if path.stem in names],
        [path for path in benchmark_paths if path.stem in names],
    )


def render_frontier(
    config_name: str,
    table: pd.DataFrame,
    wall_seconds: float,
    total_job_seconds: float,
    concurrency: int | None = None,
) -> str:
    """The Markdown page of the frontier target: F1 against real parameters per arch."""
    seeds = int(table["seeds"].max()) if len(table) else 0
    lines = [
        "# The F1-versus-memory frontier",
        "",
        f"Written by the `table_frontier` rule from a run of `{config_name}` (nothing here is "
        "typed by hand). A point is one method at one memory budget (a factor of the student's "
        "parameter count): its real parameter count (mean over apps) and its test micro-F1 at "
        "the threshold chosen on validation, averaged over the apps of each seed, then mean ± "
        f"sd over {seeds} seed(s). The teacher is the ceiling; blockwise students sit at their "
        "own size.",
        "",
        run_time_line(
            "frontier (after the default run)", wall_seconds, total_job_seconds, concurrency
        ),
        "",
    ]
    for arch, rows in table.groupby("arch", sort=True):
        lines += [
            f"## {arch}",
            "",
            "| method | budget factor | parameters | F1 | sd over seeds |",
            "|---|---|---|---|---|",
        ]
        for _, row in rows.iterrows():
            above = row.get("above_budget", False)
            mark = " (above: smallest)" if pd.notna(above) and bool(above) else ""
            lines.append(
                f"| {method_label(row['method'])} | {row['budget_factor']:g} | "
                f"{row['params']:,.0f}{mark} | {_fmt(row['f1'])} | {_fmt(row['f1_sd'])} |"
            )
        lines.append("")
    if "above_budget" in table.columns and (table["above_budget"] == True).any():  # noqa: E712
        lines += [
            '"(above: smallest)": the model\'s dense parts (biases, norms) alone exceed the budget '
            "asked for, so it ran at the smallest budget that holds them; budget factors that "
            "land on the same count train the same model twice: factors whose budgets exceed "
            "the smallest give distinct points.",
            "",
        ]
    return "\n".join(lines)


# A clustering's name in paths: feature set and k, e.g. a-k3 (results/clusters/.../a-k3.parquet)
CLUSTERING_NAME = re.compile(r"(?:^|[-/])(?P<name>[adi]-k\d+)$")
SWEEP_SETTINGS = {"k": ["k"], "kd": ["alpha", "temperature"], "features": ["features"]}


def sweep_logs_and_benchmarks(
    log_paths: Sequence[Path], benchmark_paths: Sequence[Path], default_clustering: str
) -> tuple[list[Path], list[Path]]:
    """The logs and benchmarks of the jobs that only the sweeps target runs: the sweep variants'
    students and evaluations, the clusterings other than the default one (`default_clustering`,
    e.g. a-k3) with their cluster teachers, and the sweep tables."""

    def sweep_only(path: Path) -> bool:
        if SWEEP_METHOD.match(path.stem) or path.stem.startswith("sweep_"):
            return True
        names = [CLUSTERING_NAME.search(part) for part in (*path.parent.parts, path.stem)]
        return any(name and name["name"] != default_clustering for name in names)

    return (
        [path for path in log_paths if sweep_only(path)],
        [path for path in benchmark_paths if sweep_only(path)],
    )


def sweep_summary(table: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """One row per swept setting, from a sweep table (packd.tables.sweep_table): the PaCKD
    student's F1 per arch (`F1, <arch>`: mean over apps and seeds) and over all cells
    (`F1, mean`), each followed by its sd over seeds (`sd, <arch>`, `sd, mean`: the sd of each
    seed's mean over apps; NaN with one seed), and the number of seeds (`seeds`)."""
    keys = SWEEP_SETTINGS[sweep]
    by_arch = table.pivot_table(index=keys, columns="arch", values="f1", aggfunc="mean")
    per_seed = table.groupby([*keys, "arch", "seed"])["f1"].mean()
    sd_by_arch = per_seed.groupby(level=[*keys, "arch"]).std().unstack("arch")
    summary = pd.DataFrame(index=by_arch.index)
    for arch in by_arch.columns:
        summary[f"F1, {arch}"] = by_arch[arch]
        summary[f"sd, {arch}"] = sd_by_arch[arch]
    summary["F1, mean"] = table.groupby(keys)["f1"].mean()
    summary["sd, mean"] = table.groupby([*keys, "seed"])["f1"].mean().groupby(level=keys).std()
    summary["seeds"] = table.groupby(keys)["seed"].nunique()
    return summary.reset_index()


def render_sweeps(
    config_name: str,
    tables: Mapping[str, pd.DataFrame],
    wall_seconds: float,
    total_job_seconds: float,
    concurrency: int | None = None,
) -> str:
    """The Markdown page of the sweeps target: each sweep's F1 per setting and arch."""
    seeds = max((table["seed"].nunique() for table in tables.values()), default=0)
    titles = {"k": "Number of clusters k", "kd": "Distillation alpha and temperature T",
              "features": "Clustering features"}  # fmt: skip
    lines = [
        "# PaCKD sweeps",
        "",
        f"Written by the `sweeps_page` rule from a run of `{config_name}` (nothing here is typed "
        "by hand). Each value is the PaCKD student's test micro-F1 at the threshold chosen on "
        f"validation, averaged over the apps and {seeds} seed(s), ± the sd over seeds of each "
        "seed's mean over apps (no sd with one seed; `seeds`: n); every other setting is the "
        "config's. The full tables, per app and seed: `results/tables/sweep_*.csv`.",
        "",
        run_time_line(
            "sweeps (after the default run)", wall_seconds, total_job_seconds, concurrency
        ),
        "",
    ]
    for sweep, table in tables.items():
        summary = sweep_summary(table, sweep)
        keys = SWEEP_SETTINGS[sweep]
        f1_columns = [column for column in summary.columns if column.startswith("F1, ")]
        header = [*keys, *f1_columns, "seeds"]
        lines += [
            f"## {titles.get(sweep, sweep)}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for _, row in summary.iterrows():
            settings = [f"{row[key]:g}" if isinstance(row[key], float) else str(row[key])
                        for key in keys]  # fmt: skip
            values = []
            for column in f1_columns:
                sd = row[column.replace("F1, ", "sd, ", 1)]
                shown = _fmt(row[column])
                values.append(f"{shown} ± {_fmt(sd)}" if pd.notna(sd) else shown)
            lines.append("| " + " | ".join([*settings, *values, str(int(row["seeds"]))]) + " |")
        lines.append("")
    return "\n".join(lines)


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


if __name__ == "__main__":
    main()
