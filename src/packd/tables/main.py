"""The main table (long form), its summary over seeds, the learning-rate selection and the
compression table, read from the per-model metrics JSON files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from packd.methods import method_rank

MAIN_COLUMNS = [
    "app",
    "arch",
    "method",
    "f1",
    "f1_at_0.5",
    "precision",
    "recall",
    "params",
    "bytes",
    "compression",
    "threshold",
    "protocol",
    "seed",
    "average_precision",
    "precision_at_degree",
    "recall_at_degree",
    "top_k_differs_from_frequency",
]
# Columns that hold measured times: a rerun changes them, nothing else.
TIMING_COLUMNS = ["latency_b1_us", "latency_b1024_us"]


def read_metrics(paths: Iterable[str | Path]) -> list[dict]:
    """The metrics JSON of each evaluated model."""
    return [json.loads(Path(path).read_text()) for path in paths]


def main_table(metrics: Sequence[dict]) -> pd.DataFrame:
    """Long form: a row per app, arch, method and protocol (validation first, then the authors')."""
    rows = []
    for entry in metrics:
        shared = {
            "app": entry["app"],
            "arch": entry["arch"],
            "method": entry["method"],
            "seed": entry.get("seed", 0),
            "val_f1": entry["val_f1"],
            "average_precision": entry["average_precision"],
            "precision_at_degree": entry["precision_at_degree"],
            "recall_at_degree": entry["recall_at_degree"],
            # NaN in metrics written before the check existed (or evaluated without train labels)
            "top_k_differs_from_frequency": entry.get("top_k_differs_from_frequency", np.nan),
            "f1_at_0.5": entry["f1_at_0.5"],
            "params": entry["params"],
            "bytes": entry["bytes"],
            "latency_b1_us": 1e6 * entry["latency_b1_s"],
            "latency_b1024_us": 1e6 * entry["latency_b1024_s"],
            "trained_on": ",".join(entry["trained_on"]),
        }
        rows.append(
            {
                **shared,
                "f1": entry["f1"],
                "precision": entry["precision"],
                "recall": entry["recall"],
                "threshold": entry["threshold"],
                "protocol": "validation",
            }
        )
        rows.append(
            {
                **shared,
                "f1": entry["test_selected_f1"],
                "precision": entry["test_selected_precision"],
                "recall": entry["test_selected_recall"],
                "threshold": entry["test_selected_threshold"],
                "protocol": "test_selected",
            }
        )
    table = pd.DataFrame(rows)
    teacher_params = table[table["method"] == "teacher"].groupby(["app", "arch"])["params"].max()
    table["compression"] = [
        teacher_params.get((app, arch), np.nan) / params
        for app, arch, params in zip(table["app"], table["arch"], table["params"], strict=True)
    ]
    table["method_order"] = table["method"].map(method_rank)
    table = table.sort_values(
        ["protocol", "app", "arch", "method_order", "method", "seed"],
        ascending=[False, True, True, True, True, True],
    )
    return table[[*MAIN_COLUMNS, "val_f1", *TIMING_COLUMNS, "trained_on"]].reset_index(drop=True)


def selection_table(selection_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Per seed, app, arch and method: each learning-rate factor tried, its best validation F1,
    which one was kept, and the seed it was chosen on (a later seed trains at the first seed's
    choice). Paths: .../seed{s}/{app}/{arch}/selection.json (the whole-app teacher) or
    .../seed{s}/{app}/{arch}/{method}.selection.json."""
    rows = []
    for path in map(Path, selection_paths):
        selection = json.loads(path.read_text())
        seed, app, arch = path.parts[-4].removeprefix("seed"), path.parts[-3], path.parts[-2]
        method = path.name.removesuffix("selection.json").removesuffix(".") or "teacher"
        for candidate in selection["candidates"]:
            rows.append(
                {
                    "seed": int(seed),
                    "app": app,
                    "arch": arch,
                    "method": method,
                    "lr_factor": candidate["lr_factor"],
                    "val_f1": candidate["val_f1"],
                    "chosen": candidate["lr_factor"] == selection["lr_factor"],
                    "chosen_on_seed": int(selection.get("chosen_on_seed", seed)),
                }
            )
    columns = ["seed", "app", "arch", "method", "lr_factor", "val_f1", "chosen", "chosen_on_seed"]
    table = pd.DataFrame(rows, columns=columns)
    table["method_order"] = table["method"].map(method_rank)
    table = table.sort_values(["seed", "app", "arch", "method_order", "method", "lr_factor"])
    return table.drop(columns="method_order").reset_index(drop=True)


def relative_improvement(new: float, old: float) -> float:
    """Improvement of new over old in percent of old, as the paper reports it."""
    return 100.0 * (new - old) / old


def main_summary(table: pd.DataFrame, protocol: str = "validation") -> pd.DataFrame:
    """Wide F1: app x arch rows plus mean rows, one column per method with the mean over seeds,
    its standard deviation over seeds (`<method>_sd`), and PaCKD's relative gains of the means."""
    rows = table[table["protocol"] == protocol]
    per_seed = rows.pivot_table(
        index=["app", "arch"], columns=["method", "seed"], values="f1", aggfunc="first"
    )
    methods = sorted(per_seed.columns.get_level_values("method").unique(), key=method_rank)
    wide = pd.DataFrame(index=per_seed.index)
    cell_means = {}
    for method in methods:
        cell_means[method] = per_seed[method]
        wide[method] = per_seed[method].mean(axis=1)
    for arch_group in ["all", *sorted(rows["arch"].unique())]:
        chosen = (
            wide.index
            if arch_group == "all"
            else wide.xs(arch_group, level="arch", drop_level=False).index
        )
        for method in methods:
            # The mean over cells in each seed, then its mean and sd over seeds: the seed is the
            # unit of replication.
            over_cells = cell_means[method].loc[chosen].mean(axis=0)
            wide.loc[("mean", arch_group), method] = over_cells.mean()
            wide.loc[("mean", arch_group), f"{method}_sd"] = (
                over_cells.std(ddof=1) if len(over_cells) > 1 else np.nan
            )
    for method in methods:
        cells = [index for index in wide.index if index[0] != "mean"]
        sd = cell_means[method].std(axis=1, ddof=1) if cell_means[method].shape[1] > 1 else np.nan
        wide.loc[cells, f"{method}_sd"] = sd
    ordered = [column for method in methods for column in (method, f"{method}_sd")]
    wide = wide[ordered]
    for other in ("standard_kd", "no_kd", "teacher"):
        if {"packd", other} <= set(wide.columns):
            wide[f"packd_vs_{other}_%"] = [
                relative_improvement(packd, base)
                for packd, base in zip(wide["packd"], wide[other], strict=True)
            ]
    return wide.reset_index()


def compression_table(table: pd.DataFrame) -> pd.DataFrame:
    """Size and speed of each model: params, bytes, compression and CPU latency per sample."""
    rows = table[table["protocol"] == "validation"]
    columns = [
        "app",
        "arch",
        "method",
        "params",
        "bytes",
        "compression",
        "latency_b1_us",
        "latency_b1024_us",
        "f1",
    ]
    if "seed" in rows.columns:  # one row per seed: say which
        columns.insert(3, "seed")
    per_model = rows[columns]
    measures = [column for column in columns if column not in ("app", "arch", "method", "seed")]
    means = per_model.groupby(["arch", "method"], sort=False)[measures].mean().reset_index()
    means.insert(0, "app", "mean")
    return pd.concat([per_model, means], ignore_index=True)


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table with floats rounded for reading."""
    return table.to_markdown(index=False, floatfmt=f".{digits}f") + "\n"
