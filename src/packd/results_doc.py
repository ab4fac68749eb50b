"""The results document: every number in it is read from the run's tables and job records.

The README links to docs/results.md, which is this document as written by the `results_doc`
rule for the default config (`make results-doc` copies it there), so no figure is typed by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from packd.methods import method_label, method_rank


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def run_wall_seconds(log_paths: Sequence[Path], benchmark_paths: Sequence[Path]) -> float:
    """Wall time from the first job's start to the last job's end: each job's log is last
    written when it ends, and its benchmark gives its duration. A run resumed after a pause
    counts the pause too."""
    seconds = {}
    for path in benchmark_paths:
        frame = pd.read_csv(path, sep="\t")
        seconds[path.with_suffix("").as_posix().split("benchmarks/", 1)[-1]] = float(
            frame["s"].iloc[0]
        )
    starts, ends = [], []
    for path in log_paths:
        key = path.with_suffix("").as_posix().split("logs/", 1)[-1]
        end = path.stat().st_mtime
        ends.append(end)
        starts.append(end - seconds.get(key, 0.0))
    return max(ends) - min(starts) if ends else float("nan")


def job_seconds(benchmark_paths: Sequence[Path]) -> float:
    """Sum of the jobs' own wall seconds (Snakemake benchmarks)."""
    return float(sum(pd.read_csv(path, sep="\t")["s"].iloc[0] for path in benchmark_paths))


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
) -> str:
    """The Markdown results document of one run.

    tables: main, main_summary, significance, ceiling, teacher_selection, compression, prefetch
    (the CSVs of results/tables/).
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
        f"- Run time: {wall_seconds / 60:.1f} min from the first job's start to the last job's "
        f"end; the jobs' own time adds up to {total_job_seconds / 60:.1f} min.",
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
        lines += [
            "",
            "## Significance (the seed is the unit of replication)",
            "",
            "| comparison | arch | mean difference | sd over seeds | 95% interval | p |",
            "|---|---|---|---|---|---|",
        ]
        for _, row in significance.iterrows():
            interval = f"[{_fmt(row['ci95_low'])}, {_fmt(row['ci95_high'])}]"
            lines.append(
                f"| {row['comparison']} | {row['arch']} | {_fmt(row['mean_f1_difference'])} | "
                f"{_fmt(row['sd_over_seeds'])} | {interval} | {_fmt(row['p_value'], 3)} |"
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
        "`teacher_selection.md`, `compression.md`, `prefetch.md`.",
        "",
    ]
    return "\n".join(lines)


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
