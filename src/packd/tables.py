"""The paper's tables, built from the per-model metrics JSON files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from packd.methods import (
    BLOCKWISE_SIZE,
    FRONTIER_BASES,
    FRONTIER_METHOD,
    METHODS,
    SWEEP_METHOD,
    method_rank,
)

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


CEILING_BASELINES = ("frequency", "mlp", "no_kd")


def ceiling_table(table: pd.DataFrame) -> pd.DataFrame:
    """Does every teacher beat the zero-effort baselines and its own no-KD student on
    validation? One row per seed, app and arch, with each validation F1 and a verdict."""
    rows = table[table["protocol"] == "validation"]
    wide = rows.pivot_table(index=["seed", "app", "arch"], columns="method", values="val_f1")
    if "teacher" not in wide.columns:
        return pd.DataFrame()
    out = pd.DataFrame({"teacher_val_f1": wide["teacher"]})
    failures = pd.Series("", index=wide.index)
    for baseline in CEILING_BASELINES:
        if baseline in wide.columns:
            out[f"{baseline}_val_f1"] = wide[baseline]
            below = wide["teacher"] <= wide[baseline]
            failures[below] += f"{baseline} "
    out["teacher_is_ceiling"] = failures == ""
    out["teacher_not_above"] = failures.str.strip()
    return out.reset_index()


# A cell counts as collapsed to the label prior when its teacher issues the bit-frequency
# baseline's top-k bits (the same k bits for every sample) on all but fewer than this fraction of
# test samples. The baseline itself differs on none, and a model that learned only the prior
# plus noise flips near-tied bits on a few percent; one that reads its input differs on most
# samples of an app whose deltas vary. Above 90% the same prefetches whatever the input is a
# fixed-set prefetcher, whatever its F1.
COLLAPSE_TOP_K_DIFFERS = 0.10
# ... or when the teacher's test F1 beats the bit-frequency baseline's by less than this: one F1
# point, about the spread between seeds of a cell's F1 and well under the 0.03 by which the
# teachers beat the baseline on average in docs/results.md. Below it the cell cannot tell a
# model that learned from the prior, so its distillation comparisons say nothing.
COLLAPSE_F1_MARGIN = 0.01
LEARNABILITY_COLUMNS = [
    "seed",
    "app",
    "arch",
    "teacher_f1",
    "teacher_minus_frequency_f1",
    "teacher_minus_no_kd_f1",
    "teacher_minus_frequency_val_f1",
    "teacher_minus_no_kd_val_f1",
    "teacher_top_k_differs",
    "no_kd_top_k_differs",
    "collapsed",
    "collapse_reason",
    "missing",
]
LEARNABILITY_GAPS = [
    "teacher_minus_frequency_f1",
    "teacher_minus_no_kd_f1",
    "teacher_minus_frequency_val_f1",
    "teacher_minus_no_kd_val_f1",
    "teacher_top_k_differs",
]


def learnability_table(table: pd.DataFrame) -> pd.DataFrame:
    """Did the models learn more than the label prior? One row per seed, app and arch of the
    main table's validation protocol.

    teacher_f1 is the teacher's test F1; teacher_minus_frequency_f1 and teacher_minus_no_kd_f1
    its gaps to the bit-frequency baseline and to its own no-KD student (the same on validation
    F1: `*_val_f1`); teacher_top_k_differs and no_kd_top_k_differs the fraction of test samples
    whose top-k bits (k = the prefetch degree) are not the frequency baseline's. `collapsed`: the
    teacher differs on fewer than COLLAPSE_TOP_K_DIFFERS of the samples, or beats the frequency
    baseline's test F1 by less than COLLAPSE_F1_MARGIN; `collapse_reason` says which. A method
    absent from the run leaves its gaps NaN and is named in `missing`, as is a top-k comparison
    the metrics lack (it needs no frequency model: it comes from the training labels).
    """
    rows = table[table["protocol"] == "validation"]
    keys = ["seed", "app", "arch"]
    teacher = rows[rows["method"] == "teacher"]
    if teacher.empty:
        return pd.DataFrame(columns=LEARNABILITY_COLUMNS)
    cells = pd.MultiIndex.from_frame(teacher[keys])
    by_method = rows.set_index([*keys, "method"])
    methods = set(rows["method"])

    def of(column: str, method: str) -> pd.Series:
        """column of method's row in every cell; NaN where the method or column is absent."""
        if column not in by_method.columns or method not in methods:
            return pd.Series(np.nan, index=cells, dtype=float)
        return by_method[column].xs(method, level="method").reindex(cells).astype(float)

    out = pd.DataFrame(index=cells)
    out["teacher_f1"] = of("f1", "teacher")
    for baseline in ("frequency", "no_kd"):
        out[f"teacher_minus_{baseline}_f1"] = out["teacher_f1"] - of("f1", baseline)
    for baseline in ("frequency", "no_kd"):
        out[f"teacher_minus_{baseline}_val_f1"] = of("val_f1", "teacher") - of("val_f1", baseline)
    differs = "top_k_differs_from_frequency"
    out["teacher_top_k_differs"] = of(differs, "teacher")
    out["no_kd_top_k_differs"] = of(differs, "no_kd")
    same_top_k = out["teacher_top_k_differs"] < COLLAPSE_TOP_K_DIFFERS  # NaN: False
    no_gain = out["teacher_minus_frequency_f1"] < COLLAPSE_F1_MARGIN  # NaN: False
    out["collapsed"] = same_top_k | no_gain
    reasons = []
    for share, flat, gap, flat_gain in zip(
        out["teacher_top_k_differs"], same_top_k, out["teacher_minus_frequency_f1"], no_gain,
        strict=True,
    ):  # fmt: skip
        reason = []
        if flat:
            reason.append(
                f"top-k is the frequency baseline's on {100 * (1 - share):.1f}% of samples"
            )
        if flat_gain:
            reason.append(f"test F1 only {gap:+.4f} above the frequency baseline")
        reasons.append("; ".join(reason))
    out["collapse_reason"] = reasons
    present = rows.groupby(keys)["method"].agg(set).reindex(cells)
    out["missing"] = [
        " ".join(
            [method for method in ("frequency", "no_kd") if method not in methods]
            + ([differs] if pd.isna(share) else [])
        )
        for methods, share in zip(present, out["teacher_top_k_differs"], strict=True)
    ]
    return out.reset_index().sort_values(keys, ignore_index=True)[LEARNABILITY_COLUMNS]


def learnability_summary(learnability: pd.DataFrame) -> pd.DataFrame:
    """The learnability table's gaps (and the teacher's top-k differs fraction) over cells: one
    row per column of LEARNABILITY_GAPS (`measure`) with its mean over the cells that have it
    (`mean_over_cells`, NaN in none) and their number (`cells`)."""
    return pd.DataFrame(
        [
            {
                "measure": column,
                "mean_over_cells": learnability[column].astype(float).mean(),
                "cells": int(learnability[column].notna().sum()),
            }
            for column in LEARNABILITY_GAPS
        ],
        columns=["measure", "mean_over_cells", "cells"],
    )


def collapsed_cells(learnability: pd.DataFrame) -> pd.DataFrame:
    """The learnability table's rows flagged `collapsed` (read back from CSV too)."""
    if learnability.empty:
        return learnability
    return learnability[learnability["collapsed"].astype(str).str.lower() == "true"]


def learnability_markdown(learnability: pd.DataFrame) -> str:
    """The learnability table, its summary over cells and the count of collapsed cells."""
    collapsed = collapsed_cells(learnability)
    return (
        to_markdown(learnability)
        + "\n"
        + to_markdown(learnability_summary(learnability))
        + f"\nCollapsed to the label prior: {len(collapsed)} of {len(learnability)} cells "
        f"(teacher's top-k differs from the frequency baseline's on fewer than "
        f"{COLLAPSE_TOP_K_DIFFERS:.0%} of test samples, or its test F1 beats the baseline's by "
        f"less than {COLLAPSE_F1_MARGIN}).\n"
    )


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


def sweep_table(metrics: Sequence[dict], sweep: str) -> pd.DataFrame:
    """PaCKD student F1 (validation protocol) per seed, app, arch and the swept setting.

    Beside each seed's f1, the spread over seeds of its (app, arch, setting):
    `f1_mean_over_seeds`, `f1_sd_over_seeds` (ddof 1, NaN with one seed) and `seeds` (n).
    """
    rows = []
    for entry in metrics:
        settings = SWEEP_METHOD.match(entry["method"])
        if settings is None:
            raise ValueError(f"not a sweep method: {entry['method']}")
        rows.append(
            {
                "seed": entry.get("seed"),
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


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table with floats rounded for reading."""
    return table.to_markdown(index=False, floatfmt=f".{digits}f") + "\n"


def significance_comparisons(methods: Iterable[str]) -> list[tuple[str, str]]:
    """(a, b) pairs the significance table tests: PaCKD against its two ablations, the teacher
    against PaCKD and no KD (the ceiling), and every other student or baseline against no KD."""
    present = set(methods)
    pairs = [
        ("packd", "standard_kd"),
        ("packd", "no_kd"),
        ("standard_kd", "no_kd"),
        ("teacher", "packd"),
        ("teacher", "no_kd"),
    ]
    pairs += [
        (name, "no_kd")
        for name in METHODS
        if name not in {"packd", "standard_kd", "no_kd", "teacher"}
        and METHODS[name].role in ("student", "baseline", "routed_teachers")
    ]
    return [(a, b) for a, b in pairs if a in present and b in present]


SIGNIFICANCE_ALPHA = 0.05
# A standard deviation at or below this is float rounding of equal differences: zero.
ZERO_SD = 1e-12


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given; NaN (no test) stays NaN and is
    not counted in the family.

    With the m defined p-values sorted p(1) <= ... <= p(m), p(i) is adjusted to
    max over j <= i of min(1, (m - j + 1) p(j)); a test is rejected at level alpha exactly when
    its adjusted p is at most alpha, which controls the family-wise error rate at alpha under
    any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    if m == 0:
        return adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean of values (n - 1 degrees of freedom); the
    bounds are NaN with fewer than two values, and equal the mean when the sd is zero."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else np.nan
    if n < 2:
        return mean, np.nan, np.nan
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return mean, mean - half, mean + half


def significance_table(
    table: pd.DataFrame, protocol: str = "validation", alpha: float = SIGNIFICANCE_ALPHA
) -> pd.DataFrame:
    """Paired t tests of F1(a) - F1(b) with the SEED as the unit of replication, Holm-corrected.

    For each comparison and arch group (all cells, then each arch): the mean over (app, arch)
    cells of F1(a) - F1(b) in each seed; then, over the `seeds` (n) per-seed means: their mean,
    standard deviation, the 95% t interval of the mean (`ci95_low`, `ci95_high`, n - 1 degrees
    of freedom) and the raw two-sided p-value of a one-sample t test against zero (`p_value`).
    Cells of one seed share its data subset and k-means, so they are not counted as independent.

    Multiplicity: the FAMILY is every test in this table, i.e. every (comparison, arch group)
    row of one protocol that has a p-value; the overall rows and the per-arch rows are in the
    same family (Holm holds under any dependence between them). `p_holm` is Holm's step-down
    adjusted p over that family, `significant_holm` is p_holm <= alpha (0.05), and
    `holm_tests` is the family's size m.

    No test, p NaN (left out of the family, `significant_holm` False, `note` says why): one seed
    (no spread to test against), or a zero sd over seeds (every seed gives the same difference:
    t is 0/0 or x/0, undefined; the interval is then the single value).
    """
    rows_in = table[table["protocol"] == protocol]
    wide = rows_in.pivot_table(index=["seed", "app", "arch"], columns="method", values="f1")
    rows = []
    for first, second in significance_comparisons(wide.columns):
        difference = (wide[first] - wide[second]).dropna()
        for arch_group in ["all", *sorted(rows_in["arch"].unique())]:
            chosen = difference
            if arch_group != "all":
                chosen = difference[difference.index.get_level_values("arch") == arch_group]
            per_seed = chosen.groupby(level="seed").mean()
            seeds = len(per_seed)
            mean, low, high = t_interval(per_seed.to_numpy())
            row = {
                "comparison": f"{first} - {second}",
                "arch": arch_group,
                "seeds": seeds,
                "cells": int(chosen.groupby(level="seed").size().iloc[0]) if seeds else 0,
                "mean_f1_difference": mean,
                "sd_over_seeds": np.nan,
                "ci95_low": low,
                "ci95_high": high,
                "p_value": np.nan,
                "note": "",
            }
            if seeds < 2:
                row["note"] = f"{seeds} seed(s): no test"
            else:
                sd = float(per_seed.std(ddof=1))
                row["sd_over_seeds"] = sd
                if sd <= ZERO_SD:
                    row.update(sd_over_seeds=0.0, ci95_low=mean, ci95_high=mean)
                    row["note"] = (
                        f"sd 0: the same difference ({mean:+.4g}) in all {seeds} seeds; "
                        "t undefined, no test"
                    )
                else:
                    t_value = mean / (sd / np.sqrt(seeds))
                    row["p_value"] = float(2 * stats.t.sf(abs(t_value), seeds - 1))
            for seed, value in per_seed.items():
                row[f"seed{seed}"] = float(value)
            rows.append(row)
    result = pd.DataFrame(rows)
    if result.empty:
        return result
    adjusted = holm_adjust(result["p_value"].to_numpy())
    tests = int(np.count_nonzero(~np.isnan(adjusted)))
    position = result.columns.get_loc("p_value") + 1
    result.insert(position, "p_holm", adjusted)
    result.insert(position + 1, "significant_holm", adjusted <= alpha)  # NaN: False
    result.insert(position + 2, "holm_tests", tests)
    return result


def seed_noise_table(table: pd.DataFrame, protocol: str = "validation") -> pd.DataFrame:
    """How far the main table's F1 differences move from seed to seed (a description of the
    training noise; the significance table holds the test, with the seed as the unit).

    Per comparison (a, b) of significance_comparisons: the mean over (app, arch) cells of
    F1(a) - F1(b) in each seed, the standard deviation of that mean across seeds, the pooled
    per-cell standard deviation across seeds, and the share of cells whose sign of F1(a) - F1(b)
    is the same in every seed. Needs at least two seeds.
    """
    rows_in = table[table["protocol"] == protocol]
    seeds = sorted(rows_in["seed"].unique())
    if len(seeds) < 2:
        raise ValueError(f"need at least two seeds to measure seed noise, got {len(seeds)}")
    wide = rows_in.pivot_table(index=["app", "arch"], columns=["method", "seed"], values="f1")
    methods = wide.columns.get_level_values("method").unique()
    rows_out = []
    for first, second in significance_comparisons(methods):
        diffs = np.stack([(wide[(first, s)] - wide[(second, s)]).to_numpy() for s in seeds])
        signs = np.sign(diffs)
        row: dict[str, object] = {"comparison": f"{first} - {second}", "cells": diffs.shape[1]}
        for seed, seed_diffs in zip(seeds, diffs, strict=True):
            row[f"mean_diff_seed{seed}"] = float(seed_diffs.mean())
        row["sd_of_mean_diff"] = float(diffs.mean(axis=1).std(ddof=1))
        row["sd_cell_diff"] = float(np.sqrt(diffs.var(axis=0, ddof=1).mean()))
        row["same_sign_cells"] = float((signs == signs[0]).all(axis=0).mean())
        rows_out.append(row)
    return pd.DataFrame(rows_out)


# Each replay report's figures in the prefetch table (packd.prefetch.PrefetchReport).
PREFETCH_VALUES = [
    "accuracy",
    "coverage",
    "miss_reduction",
    "extra_traffic",
    "issued",
    "filled",
    "redundant",
    "late",
    "useful",
    "baseline_misses",
]
PREFETCH_COLUMNS = [
    "app",
    "arch",
    "kind",
    "name",
    "f1",
    *PREFETCH_VALUES,
    "f1_coverage_rho",
    "f1_coverage_p",
    "f1_ranking_holds",
]
# Spearman rho at or above which the models' F1 ranking counts as holding for coverage.
RANKING_AGREEMENT_RHO = 0.5


def _ranking_agreement(f1: pd.Series, coverage: pd.Series) -> tuple[float, float, str]:
    """Spearman rho of F1 and coverage over one cell's models, its two-sided p, and 'yes', 'no'
    or 'n/a' (rho >= RANKING_AGREEMENT_RHO)."""
    if len(f1) < 3 or f1.nunique() < 2 or coverage.nunique() < 2:
        return float("nan"), float("nan"), "n/a"  # fewer than 3 models or all tied: no ranking
    result = stats.spearmanr(f1, coverage)
    rho = float(result.statistic)
    return rho, float(result.pvalue), "yes" if rho >= RANKING_AGREEMENT_RHO else "no"


def prefetch_table(reports: Sequence[dict], metrics: Sequence[dict]) -> pd.DataFrame:
    """Prefetch figures per app and arch: each model's row (with its test F1), then the classic
    prefetchers' rows of that app, and whether the F1 ranking of the models holds for coverage.

    reports are the prefetch JSONs (seed, app, source: an arch or "classic", name, and the
    PREFETCH_VALUES: counts and ratios of the prefetches as written, filtered or not); metrics
    the models' metrics JSONs (seed, app, arch, method, f1). Model rows are means over seeds.
    f1_coverage_rho and f1_coverage_p: Spearman's rho of the cell's models' F1 and coverage and
    its p; f1_ranking_holds: 'yes' when rho >= RANKING_AGREEMENT_RHO ('n/a' with fewer than 3
    models or no ranking).
    """
    f1_of = {
        (entry.get("seed", 0), entry["app"], entry["arch"], entry["method"]): entry["f1"]
        for entry in metrics
    }
    row_columns = PREFETCH_COLUMNS[: 5 + len(PREFETCH_VALUES)]
    per_seed = pd.DataFrame(
        [
            {
                "app": report["app"],
                "arch": report["source"],
                "kind": "model",
                "name": report["name"],
                "f1": f1_of[
                    (report.get("seed", 0), report["app"], report["source"], report["name"])
                ],
                **{column: report[column] for column in PREFETCH_VALUES},
            }
            for report in reports
            if report["source"] != "classic"
        ],
        columns=row_columns,
    )
    # A model's row is its mean over seeds (the classic prefetchers do not depend on the seed).
    models = per_seed.groupby(["app", "arch", "kind", "name"], as_index=False, sort=False).mean()
    classic = list(
        {
            (report["app"], report["name"]): report
            for report in reports
            if report["source"] == "classic"
        }.values()
    )
    cells = []
    for (app, arch), rows in models.groupby(["app", "arch"], sort=True):
        rows = rows.sort_values("name", key=lambda names: names.map(method_rank), kind="stable")
        classic_rows = pd.DataFrame(
            [
                {"app": app, "arch": arch, "kind": "classic", "name": report["name"]}
                | {column: report[column] for column in PREFETCH_VALUES}
                for report in classic
                if report["app"] == app
            ],
            columns=row_columns,
        )
        rho, p_value, holds = _ranking_agreement(rows["f1"], rows["coverage"])
        cell = pd.concat([rows, classic_rows], ignore_index=True)
        cells.append(
            cell.assign(f1_coverage_rho=rho, f1_coverage_p=p_value, f1_ranking_holds=holds)
        )
    if not cells:
        return pd.DataFrame(columns=PREFETCH_COLUMNS)
    return pd.concat(cells, ignore_index=True)[PREFETCH_COLUMNS]


def _frontier_factor(frontier: re.Match | None) -> float:
    """A frontier method's budget factor; NaN at the blockwise student's size (set later)."""
    if frontier is None:
        return 1.0
    return np.nan if frontier["factor"] == BLOCKWISE_SIZE else float(frontier["factor"])


def frontier_table(metrics: Sequence[dict]) -> pd.DataFrame:
    """Per arch, method and budget factor: real parameters (mean over apps) and test F1 (mean
    over apps in each seed, then mean and sd over seeds). above_budget: the real count exceeds
    the budget asked for by over 25% (a hashed model's dense parts alone exceed it)."""
    rows = []
    for entry in metrics:
        frontier = FRONTIER_METHOD.match(entry["method"])
        base = frontier["base"] if frontier else entry["method"]
        rows.append(
            {
                "arch": entry["arch"],
                "method": base,
                "budget_factor": _frontier_factor(frontier),
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
