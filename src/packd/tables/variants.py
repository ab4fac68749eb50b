"""The tables of model variants: the sweeps' settings and the frontier's memory budgets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from packd.methods import BLOCKWISE_SIZE, FRONTIER_BASES, BudgetVariant, SweepVariant, method_rank

# The settings each sweep varies: its table's key columns
SWEEP_SETTINGS = {"k": ["k"], "kd": ["alpha", "temperature"], "features": ["features"]}


def sweep_table(
    metrics: Sequence[dict], sweep: str, variants: Iterable[SweepVariant]
) -> pd.DataFrame:
    """PaCKD student F1 (validation protocol) per seed, app, arch and the swept setting, of the
    sweep's variants (each metrics entry's method is one of their names).

    Beside each seed's f1, the spread over seeds of its (app, arch, setting):
    `f1_mean_over_seeds`, `f1_sd_over_seeds` (ddof 1, NaN with one seed) and `seeds` (n).
    """
    by_name = {variant.name: variant for variant in variants}
    rows = []
    for entry in metrics:
        variant = by_name.get(entry["method"])
        if variant is None:
            raise ValueError(f"not a variant of the {sweep} sweep: {entry['method']}")
        rows.append(
            {
                "seed": entry.get("seed"),
                "app": entry["app"],
                "arch": entry["arch"],
                "features": variant.features,
                "k": variant.k,
                "alpha": variant.alpha,
                "temperature": variant.temperature,
                "f1": entry["f1"],
                "f1_at_0.5": entry["f1_at_0.5"],
                "test_selected_f1": entry["test_selected_f1"],
            }
        )
    keys = SWEEP_SETTINGS[sweep]
    frame = pd.DataFrame(rows)
    groups = frame.groupby(["app", "arch", *keys])
    spread = {
        "f1_mean_over_seeds": groups["f1"].transform("mean"),
        "f1_sd_over_seeds": groups["f1"].transform("std"),  # ddof 1: NaN with one seed
        "seeds": groups["seed"].transform("nunique").astype(int),
    }
    position = frame.columns.get_loc("f1") + 1
    for offset, (name, values) in enumerate(spread.items()):
        frame.insert(position + offset, name, values)
    return frame.sort_values(["app", "arch", *keys, "seed"]).reset_index(drop=True)


def frontier_table(metrics: Sequence[dict], models: Iterable[BudgetVariant]) -> pd.DataFrame:
    """Per arch, method and budget factor: real parameters (mean over apps) and test F1 (mean
    over apps in each seed, then mean and sd over seeds), of the frontier's models (each metrics
    entry's method is one of their names; a model at its own size is at factor 1). above_budget:
    the real count exceeds the budget asked for by over 25% (a hashed model's dense parts alone
    exceed it)."""
    by_name = {model.name: model for model in models}
    rows = []
    for entry in metrics:
        model = by_name.get(entry["method"])
        if model is None:
            raise ValueError(f"not a model of the frontier: {entry['method']}")
        # NaN at the blockwise student's size: its factor is set below, from its real count
        factor = np.nan if model.factor == BLOCKWISE_SIZE else float(model.factor)
        rows.append(
            {
                "arch": entry["arch"],
                "method": model.base,
                "budget_factor": factor,
                "seed": entry.get("seed", 0),
                "app": entry["app"],
                "params": entry["params"],
                "f1": entry["f1"],
            }
        )
    frame = pd.DataFrame(rows)
    # The budget asked for: the factor times the student's count (no KD's at factor 1). A hashed
    # model that must keep more dense parameters than that sits above it, at its smallest budget.
    students = frame[(frame["method"] == "no_kd") & (frame["budget_factor"] == 1.0)]
    student_params = students.groupby(["arch", "app"])["params"].first()
    student_of_row = np.array(
        [student_params.get(key, np.nan) for key in zip(frame["arch"], frame["app"], strict=True)]
    )
    # At the blockwise student's size (factor NaN): its factor is its real count over the
    # student's, and it asks for exactly its own count
    matched = frame["budget_factor"].isna().to_numpy()
    frame.loc[matched, "budget_factor"] = (frame["params"].to_numpy() / student_of_row)[matched]
    asked = np.where(matched, frame["params"], frame["budget_factor"] * student_of_row)
    budgeted = frame["method"].isin(FRONTIER_BASES)  # the teacher and blockwise: their own size
    # 25% of slack: a student sized to a budget takes the closest width, a little above or below
    frame["above_budget"] = budgeted & (frame["params"] > 1.25 * np.array(asked))
    keys = ["arch", "method", "budget_factor"]
    per_seed = frame.groupby([*keys, "seed"]).agg(
        params=("params", "mean"), f1=("f1", "mean"), above_budget=("above_budget", "any")
    )
    table = per_seed.groupby(keys).agg(
        params=("params", "mean"),
        f1=("f1", "mean"),
        f1_sd=("f1", lambda values: values.std(ddof=1) if len(values) > 1 else np.nan),
        seeds=("f1", "size"),
        above_budget=("above_budget", "any"),
    )
    table = table.reset_index()
    table["method_order"] = table["method"].map(method_rank)
    table = table.sort_values(["arch", "method_order", "budget_factor"])
    return table.drop(columns="method_order").reset_index(drop=True)
