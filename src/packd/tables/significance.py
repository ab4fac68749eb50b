"""The statistics of the main table's F1 differences: paired t tests with the seed as the
unit of replication, Holm's correction, t intervals and the seed-to-seed noise."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from packd.methods import METHODS


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
    samples = np.asarray(values, dtype=float)
    n = len(samples)
    mean = float(samples.mean()) if n else np.nan
    if n < 2:
        return mean, np.nan, np.nan
    sd = float(samples.std(ddof=1))
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
