"""The paper's tables, built from the per-model metrics JSON files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from packd.methods import SWEEP_METHOD, method_rank

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
]


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
    teacher_params = table[table["method"] == "teacher"].groupby(["app", "arch"])["params"].first()
    table["compression"] = [
        teacher_params.get((app, arch), np.nan) / params
        for app, arch, params in zip(table["app"], table["arch"], table["params"], strict=True)
    ]
    table["method_order"] = table["method"].map(method_rank)
    table = table.sort_values(
        ["protocol", "app", "arch", "method_order", "method"],
        ascending=[False, True, True, True, True],
    )
    extra = ["latency_b1_us", "latency_b1024_us", "trained_on"]
    return table[MAIN_COLUMNS + extra].reset_index(drop=True)


def relative_improvement(new: float, old: float) -> float:
    """Improvement of new over old in percent of old, as the paper reports it."""
    return 100.0 * (new - old) / old


def main_summary(table: pd.DataFrame, protocol: str = "validation") -> pd.DataFrame:
    """Wide F1: app x arch rows and a mean row, one column per method, with PaCKD's gains."""
    rows = table[table["protocol"] == protocol]
    wide = rows.pivot_table(index=["app", "arch"], columns="method", values="f1", aggfunc="first")
    wide = wide[sorted(wide.columns, key=method_rank)]
    wide.loc[("mean", "all"), :] = wide.mean(axis=0)
    for arch in sorted(rows["arch"].unique()):
        arch_rows = wide.xs(arch, level="arch", drop_level=False)
        wide.loc[("mean", arch), :] = arch_rows.mean(axis=0)
    if {"packd", "standard_kd", "no_kd"} <= set(wide.columns):
        wide["packd_vs_standard_kd_%"] = [
            relative_improvement(packd, standard)
            for packd, standard in zip(wide["packd"], wide["standard_kd"], strict=True)
        ]
        wide["packd_vs_no_kd_%"] = [
            relative_improvement(packd, no_kd)
            for packd, no_kd in zip(wide["packd"], wide["no_kd"], strict=True)
        ]
    if {"packd", "teacher"} <= set(wide.columns):
        wide["packd_vs_teacher_%"] = [
            relative_improvement(packd, teacher)
            for packd, teacher in zip(wide["packd"], wide["teacher"], strict=True)
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
    per_model = rows[columns]
    means = per_model.groupby(["arch", "method"], sort=False)[columns[3:]].mean().reset_index()
    means.insert(0, "app", "mean")
    return pd.concat([per_model, means], ignore_index=True)


def sweep_table(metrics: Sequence[dict], sweep: str) -> pd.DataFrame:
    """PaCKD student F1 (validation protocol) per app, arch and the swept setting."""
    rows = []
    for entry in metrics:
        settings = SWEEP_METHOD.match(entry["method"])
        if settings is None:
            raise ValueError(f"not a sweep method: {entry['method']}")
        rows.append(
            {
                "app": entry["app"],
                "arch": entry["arch"],
                "features": settings["features"],
                "k": int(settings["k"]),
                "alpha": float(settings["alpha"]),
                "temperature": float(settings["temperature"]),
                "f1": entry["f1"],
                "f1_at_0.5": entry["f1_at_0.5"],
                "test_selected_f1": entry["test_selected_f1"],
            }
        )
    keys = {"k": ["k"], "features": ["features"], "kd": ["alpha", "temperature"]}[sweep]
    return pd.DataFrame(rows).sort_values(["app", "arch", *keys]).reset_index(drop=True)


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table with floats rounded for reading."""
    return table.to_markdown(index=False, floatfmt=f".{digits}f") + "\n"


def f1_from_counts(counts: np.ndarray) -> float:
    """Micro-F1 from summed (true positive, false positive, false negative) counts."""
    true_positives, false_positives, false_negatives = counts.sum(axis=0)
    denominator = 2 * true_positives + false_positives + false_negatives
    return float(2 * true_positives / denominator) if denominator else 0.0


def _bootstrap_weights(rng: np.random.Generator, n_samples: int, n_draws: int) -> np.ndarray:
    """(n_draws, n_samples): how often each test sample is drawn in each resample."""
    draws = rng.integers(0, n_samples, size=(n_draws, n_samples))
    draws += np.arange(n_draws)[:, None] * n_samples  # one bincount for every row at once
    return np.bincount(draws.ravel(), minlength=n_draws * n_samples).reshape(n_draws, -1)


def _bootstrap_f1(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Micro-F1 of each bootstrap resample (rows of weights count each sample's draws)."""
    # A product, not counts[draws]: the gather of 1000 x 16,000 x 3 took about a second per model.
    summed = weights.astype(np.float64) @ counts.astype(np.float64)  # (n_draws, 3)
    denominator = 2 * summed[:, 0] + summed[:, 1] + summed[:, 2]
    return np.divide(
        2 * summed[:, 0], denominator, out=np.zeros(len(weights)), where=denominator > 0
    )


def _bootstrap_summary(observed: float, differences: np.ndarray, cells: int) -> dict[str, float]:
    low, high = np.quantile(differences, [0.025, 0.975])
    return {
        "mean_f1_difference": observed,
        "ci95_low": float(low),
        "ci95_high": float(high),
        "share_of_draws_above_0": float(np.mean(differences > 0)),
        "cells": cells,
    }


SIGNIFICANCE_COMPARISONS = [
    ("packd", "standard_kd"),
    ("packd", "no_kd"),
    ("standard_kd", "no_kd"),
    ("packd", "teacher"),
]


def significance_table(
    counts: Mapping[tuple[str, str, str], np.ndarray], n_draws: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Paired-bootstrap comparisons of methods, over all cells and per arch.

    counts maps (app, arch, method) to that model's per-test-sample counts. Every model of an
    app is scored on that app's test samples, so one set of resamples per app serves all of
    them: the comparisons stay paired, and cells of one app move together as they really do.
    """
    archs = sorted({arch for _, arch, _ in counts})
    apps = sorted({app for app, _, _ in counts})
    rng = np.random.default_rng(seed)
    resampled, observed = {}, {}
    for app in apps:
        keys = [key for key in counts if key[0] == app]
        sizes = {len(counts[key]) for key in keys}
        if len(sizes) != 1:
            raise ValueError(f"{app}: models were scored on different test sets (sizes {sizes})")
        weights = _bootstrap_weights(rng, sizes.pop(), n_draws)
        for key in keys:
            resampled[key] = _bootstrap_f1(counts[key], weights)
            observed[key] = f1_from_counts(counts[key])
    rows = []
    for method_a, method_b in SIGNIFICANCE_COMPARISONS:
        for arch_group in ["all", *archs]:
            chosen = archs if arch_group == "all" else [arch_group]
            cells = [
                (app, arch)
                for app in apps
                for arch in chosen
                if (app, arch, method_a) in counts and (app, arch, method_b) in counts
            ]
            if cells:
                differences = np.mean(
                    [resampled[(*c, method_a)] - resampled[(*c, method_b)] for c in cells], axis=0
                )
                mean_observed = float(
                    np.mean([observed[(*c, method_a)] - observed[(*c, method_b)] for c in cells])
                )
                rows.append(
                    {
                        "comparison": f"{method_a} - {method_b}",
                        "arch": arch_group,
                        **_bootstrap_summary(mean_observed, differences, len(cells)),
                    }
                )
    return pd.DataFrame(rows)


def seed_noise_table(
    runs: Mapping[str, pd.DataFrame],
    comparisons: Sequence[tuple[str, str]] = (
        ("packd", "standard_kd"),
        ("packd", "no_kd"),
        ("standard_kd", "no_kd"),
        ("teacher", "packd"),
    ),
    protocol: str = "validation",
) -> pd.DataFrame:
    """How far the main table's F1 moves between runs that differ only in their seed.

    runs: main tables (long form) by run label, at least two. Per comparison (a, b): the mean
    over app x arch cells of F1(a) - F1(b) in each run; the spread of that mean across runs
    (its standard deviation, the training noise of the headline figure); the pooled per-cell
    standard deviation of F1(a) - F1(b) across runs, and what it implies for the mean over
    cells; and the share of cells whose sign of F1(a) - F1(b) is the same in every run.

    The verdict: the mean difference over every cell and run, its standard error from the pooled
    per-cell seed noise (cells x (runs - 1) degrees of freedom), and the two-sided p-value of a t
    test against zero. It asks whether these cells' mean difference outlasts the training noise;
    the cells themselves are fixed (this is not a claim about other apps).
    """
    if len(runs) < 2:
        raise ValueError(f"need at least two runs to measure seed noise, got {len(runs)}")
    wide = {}
    for label, table in runs.items():
        rows = table[table["protocol"] == protocol]
        wide[label] = rows.pivot_table(index=["app", "arch"], columns="method", values="f1")
    cells = None
    for frame in wide.values():
        cells = frame.index if cells is None else cells.intersection(frame.index)
    if cells is None or len(cells) == 0:
        raise ValueError("the runs share no (app, arch) cell")
    rows_out = []
    for first, second in comparisons:
        diffs = np.stack(
            [(w.loc[cells, first] - w.loc[cells, second]).to_numpy() for w in wide.values()]
        )
        signs = np.sign(diffs)
        row: dict[str, object] = {"comparison": f"{first} - {second}", "cells": len(cells)}
        for label, run_diffs in zip(wide, diffs, strict=True):
            row[f"mean_diff_{label}"] = float(run_diffs.mean())
        row["sd_of_mean_diff"] = float(diffs.mean(axis=1).std(ddof=1))
        row["sd_cell_diff"] = float(np.sqrt(diffs.var(axis=0, ddof=1).mean()))
        # With few runs sd_of_mean_diff is itself noisy; this one pools every cell's spread
        # (cells taken as independent).
        row["sd_of_mean_from_cells"] = row["sd_cell_diff"] / np.sqrt(len(cells))
        row["same_sign_cells"] = float((signs == signs[0]).all(axis=0).mean())
        row["mean_diff"] = float(diffs.mean())
        row["se_mean_diff"] = row["sd_cell_diff"] / np.sqrt(diffs.size)
        degrees = len(cells) * (len(wide) - 1)
        if row["se_mean_diff"] > 0:
            t_value = row["mean_diff"] / row["se_mean_diff"]
        else:  # no noise at all: any difference is beyond it
            t_value = 0.0 if row["mean_diff"] == 0 else np.inf
        row["p_value"] = float(2 * stats.t.sf(abs(t_value), degrees))
        rows_out.append(row)
    return pd.DataFrame(rows_out)


PREFETCH_COLUMNS = [
    "app",
    "arch",
    "kind",
    "name",
    "f1",
    "accuracy",
    "coverage",
    "miss_reduction",
    "extra_traffic",
    "issued",
    "useful",
    "baseline_misses",
    "f1_coverage_rho",
    "f1_ranking_holds",
]
# Spearman rho at or above which the models' F1 ranking counts as holding for coverage.
RANKING_AGREEMENT_RHO = 0.5


def _ranking_agreement(f1: pd.Series, coverage: pd.Series) -> tuple[float, str]:
    """Spearman rho of F1 and coverage over one cell's models, and 'yes', 'no' or 'n/a'."""
    if len(f1) < 3 or f1.nunique() < 2 or coverage.nunique() < 2:
        return float("nan"), "n/a"  # fewer than 3 models or a tie everywhere: no ranking
    rho = float(stats.spearmanr(f1, coverage).statistic)
    return rho, "yes" if rho >= RANKING_AGREEMENT_RHO else "no"


def prefetch_table(reports: Sequence[dict], metrics: Sequence[dict]) -> pd.DataFrame:
    """Prefetch figures per app and arch: each model's row (with its test F1), then the classic
    prefetchers' rows of that app, and whether the F1 ranking of the models holds for coverage.

    reports are the prefetch JSONs (app, source: an arch or "classic", name, ratios); metrics
    the models' metrics JSONs (app, arch, method, f1).
    """
    f1_of = {(entry["app"], entry["arch"], entry["method"]): entry["f1"] for entry in metrics}
    ratios = PREFETCH_COLUMNS[5:12]
    models = pd.DataFrame(
        [
            {
                "app": report["app"],
                "arch": report["source"],
                "kind": "model",
                "name": report["name"],
                "f1": f1_of[(report["app"], report["source"], report["name"])],
                **{column: report[column] for column in ratios},
            }
            for report in reports
            if report["source"] != "classic"
        ],
        columns=PREFETCH_COLUMNS[:12],
    )
    classic = [report for report in reports if report["source"] == "classic"]
    cells = []
    for (app, arch), rows in models.groupby(["app", "arch"], sort=True):
        rows = rows.sort_values("name", key=lambda names: names.map(method_rank), kind="stable")
        classic_rows = pd.DataFrame(
            [
                {"app": app, "arch": arch, "kind": "classic", "name": report["name"]}
                | {column: report[column] for column in ratios}
                for report in classic
                if report["app"] == app
            ],
            columns=PREFETCH_COLUMNS[:12],
        )
        rho, holds = _ranking_agreement(rows["f1"], rows["coverage"])
        cell = pd.concat([rows, classic_rows], ignore_index=True)
        cells.append(cell.assign(f1_coverage_rho=rho, f1_ranking_holds=holds))
    if not cells:
        return pd.DataFrame(columns=PREFETCH_COLUMNS)
    return pd.concat(cells, ignore_index=True)[PREFETCH_COLUMNS]
