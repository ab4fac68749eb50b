"""The pages of the frontier and sweeps targets."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from packd.methods import method_label
from packd.results_doc.formatting import _fmt
from packd.results_doc.runtimes import run_time_line
from packd.tables.variants import SWEEP_SETTINGS


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
