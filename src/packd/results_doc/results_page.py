"""The results page of the default target: main table, sizes, significance, ceiling and
learnability checks, learning rates and prefetching."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from packd.methods import method_label, method_rank
from packd.results_doc.formatting import _fmt, _fmt_p, _fmt_sd, _fmt_share, _text
from packd.results_doc.runtimes import run_time_line
from packd.tables import (
    COLLAPSE_F1_MARGIN,
    PRIOR_TOP_K_DIFFERS,
    collapsed_cells,
    learnability_summary,
    prior_top_k_cells,
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
            n_seeds = int(row["seeds"])
            if pd.notna(row["p_value"]):
                p, holm = _fmt_p(row["p_value"]), _fmt_p(row["p_holm"])
                verdict = "yes" if bool(row["significant_holm"]) else "no"
            else:
                p = holm = verdict = "n/a (1 seed)" if n_seeds < 2 else "n/a (sd 0)"
            lines.append(
                f"| {row['comparison']} | {row['arch']} | {n_seeds} | "
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
        chosen = rows[rows["chosen"].astype(bool)]["lr_factor"]
        if rows["val_f1"].isna().all():  # the bit-frequency baseline: no epoch, no rate
            tried, label = "trains nothing: no rate to choose", "n/a"
        else:
            tried = ", ".join(
                f"x{row['lr_factor']:g}: {_fmt(row['val_f1'])}" for _, row in rows.iterrows()
            )
            label = f"x{chosen.iloc[0]:g}" if len(chosen) else "n/a"
        lines.append(f"| {app} | {arch} | {method_label(method)} | {tried} | {label} |")
    return lines


def _learnability_lines(learnability: pd.DataFrame, methods: Sequence[str]) -> list[str]:
    """The learnability check's section: the per-cell gaps and top-k comparison, their means, a
    loud line naming every cell collapsed to the label prior (or one saying none is), another
    naming every cell whose top-k is the prior's, and which method or figure the run lacks."""
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
        f"teacher's F1 beats the frequency baseline's by less than {COLLAPSE_F1_MARGIN}: it "
        "cannot tell a trained model from the prior, so its distillation comparisons say "
        "nothing. Separately, a cell's top-k is the prior's when the teacher's top-k differs on "
        f"fewer than {PRIOR_TOP_K_DIFFERS:.0%} of the samples: whatever its F1, its degree-k "
        "prefetches before the filter are then the frequency baseline's fixed set, and only the "
        "prefetch table (after the filter) tells the models apart as prefetchers."
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
    unchecked = learnability["teacher_minus_frequency_f1"].isna().sum()
    if unchecked:
        lines += [""] if len(collapsed) else []
        lines.append(
            f"**{unchecked} of {cells} cells could not be checked for collapse**: the frequency "
            "baseline's F1 is not there."
        )
    elif not len(collapsed):
        lines.append(f"None of the {cells} cells has collapsed to the label prior.")
    prior_top_k = prior_top_k_cells(learnability)
    if len(prior_top_k):
        named = "; ".join(
            f"seed {row['seed']} {row['app']}/{row['arch']} (the frequency baseline's on "
            f"{_fmt_share(1 - float(row['teacher_top_k_differs']))} of samples)"
            for _, row in prior_top_k.iterrows()
        )
        lines += [
            "",
            f"**{len(prior_top_k)} of {cells} cells rank the prior's top-k first**: {named}.",
        ]
    lines += [
        "",
        "| seed | cell | teacher - frequency F1 | teacher - no KD F1 | teacher - frequency "
        "val F1 | teacher - no KD val F1 | teacher top-k differs | no KD top-k differs "
        "| collapsed | top-k is the prior's |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    columns = [
        "teacher_minus_frequency_f1",
        "teacher_minus_no_kd_f1",
        "teacher_minus_frequency_val_f1",
        "teacher_minus_no_kd_val_f1",
    ]
    flagged, prior_flagged = set(collapsed.index), set(prior_top_k.index)
    for index, row in learnability.iterrows():
        values = [_fmt(row[column]) for column in columns]
        values += [_fmt_share(row["teacher_top_k_differs"]), _fmt_share(row["no_kd_top_k_differs"])]
        values += ["**yes**" if index in flags else "no" for flags in (flagged, prior_flagged)]
        lines.append(f"| {row['seed']} | {row['app']}/{row['arch']} | " + " | ".join(values) + " |")
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
        f"of {cells} | {len(prior_top_k)} of {cells} |"
    )
    return lines


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
