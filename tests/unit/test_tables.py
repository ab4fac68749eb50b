"""Tables: the long-form main table, its summary, and the paired bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from packd.tables import (
    _bootstrap_f1,
    _bootstrap_summary,
    _bootstrap_weights,
    f1_from_counts,
    main_summary,
    main_table,
    relative_improvement,
    seed_noise_table,
    significance_table,
)


def metrics_entry(app: str, arch: str, method: str, f1: float, params: int) -> dict:
    return {
        "app": app,
        "arch": arch,
        "method": method,
        "f1": f1,
        "precision": f1,
        "recall": f1,
        "threshold": 0.3,
        "f1_at_0.5": f1 - 0.01,
        "test_selected_f1": f1 + 0.02,
        "test_selected_threshold": 0.25,
        "test_selected_precision": f1,
        "test_selected_recall": f1,
        "params": params,
        "bytes": 4 * params,
        "latency_b1_s": 1e-4,
        "latency_b1024_s": 1e-6,
        "trained_on": ["cpu"],
    }


@pytest.fixture
def table() -> pd.DataFrame:
    entries = []
    for app, base in (("bc", 0.4), ("pr", 0.8)):
        entries += [
            metrics_entry(app, "lstm", "teacher", base + 0.05, 100_000),
            metrics_entry(app, "lstm", "packd", base + 0.02, 1_000),
            metrics_entry(app, "lstm", "standard_kd", base, 1_000),
            metrics_entry(app, "lstm", "no_kd", base - 0.01, 1_000),
        ]
    return main_table(entries)


def test_main_table_has_two_protocols_and_compression(table: pd.DataFrame) -> None:
    assert len(table) == 16
    assert set(table["protocol"]) == {"validation", "test_selected"}
    packd = table[(table["method"] == "packd") & (table["protocol"] == "validation")]
    assert (packd["compression"] == 100).all()
    selected = table[(table["method"] == "packd") & (table["protocol"] == "test_selected")]
    assert selected["f1"].tolist() == pytest.approx([0.44, 0.84])


def test_summary_means_and_relative_gains(table: pd.DataFrame) -> None:
    summary = main_summary(table).set_index(["app", "arch"])
    mean = summary.loc[("mean", "all")]
    assert mean["packd"] == pytest.approx(0.62)
    assert mean["standard_kd"] == pytest.approx(0.60)
    assert mean["packd_vs_standard_kd_%"] == pytest.approx(100 * 0.02 / 0.60)
    assert mean["packd_vs_no_kd_%"] == pytest.approx(100 * 0.03 / 0.59)
    assert relative_improvement(0.5, 0.4) == pytest.approx(25.0)


def test_f1_from_counts_matches_definition() -> None:
    counts = np.array([[3, 1, 0], [1, 0, 2]])  # tp 4, fp 1, fn 2
    assert f1_from_counts(counts) == pytest.approx(8 / 11)


def test_bootstrap_finds_a_real_gain_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.random((n, 64)) < 0.2
    better = labels ^ (rng.random((n, 64)) < 0.05)
    worse = labels ^ (rng.random((n, 64)) < 0.15)

    def counts(predicted: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                (labels & predicted).sum(1),
                (~labels & predicted).sum(1),
                (labels & ~predicted).sum(1),
            ],
            axis=1,
        )

    real = paired_bootstrap([(counts(better), counts(worse))], n_draws=300, seed=1)
    assert real["ci95_low"] > 0 and real["share_of_draws_above_0"] == 1.0
    null = paired_bootstrap([(counts(better), counts(better))], n_draws=300, seed=1)
    assert null["mean_f1_difference"] == 0 and null["ci95_low"] == null["ci95_high"] == 0


def test_significance_table_covers_comparisons_per_arch() -> None:
    rng = np.random.default_rng(0)
    counts = {
        (app, arch, method): rng.integers(0, 5, size=(100, 3))
        for app in ("bc", "pr")
        for arch in ("lstm", "mixer")
        for method in ("teacher", "packd", "standard_kd", "no_kd")
    }
    result = significance_table(counts, n_draws=50)
    assert set(result["arch"]) == {"all", "lstm", "mixer"}
    assert set(result["comparison"]) == {
        "packd - standard_kd",
        "packd - no_kd",
        "standard_kd - no_kd",
        "packd - teacher",
    }
    assert (result["ci95_low"] <= result["ci95_high"]).all()
    assert (result.loc[result["arch"] == "all", "cells"] == 4).all()


def _seed_run(f1: dict[tuple[str, str, str], float]) -> pd.DataFrame:
    rows = [
        {"app": app, "arch": arch, "method": method, "f1": value, "protocol": "validation"}
        for (app, arch, method), value in f1.items()
    ]
    rows.append({"app": "x", "arch": "lstm", "method": "packd", "f1": 0.0, "protocol": "test"})
    return pd.DataFrame(rows)


def test_seed_noise_table_measures_spread_and_sign_agreement() -> None:
    run_a = _seed_run(
        {("x", "lstm", "packd"): 0.50, ("x", "lstm", "no_kd"): 0.40,
         ("y", "lstm", "packd"): 0.70, ("y", "lstm", "no_kd"): 0.72}
    )  # fmt: skip
    run_b = _seed_run(
        {("x", "lstm", "packd"): 0.54, ("x", "lstm", "no_kd"): 0.40,
         ("y", "lstm", "packd"): 0.70, ("y", "lstm", "no_kd"): 0.68}
    )  # fmt: skip
    table = seed_noise_table({"s1": run_a, "s2": run_b}, comparisons=[("packd", "no_kd")])
    row = table.iloc[0]
    assert row["cells"] == 2
    assert row["mean_diff_s1"] == pytest.approx((0.10 - 0.02) / 2)
    assert row["mean_diff_s2"] == pytest.approx((0.14 + 0.02) / 2)
    # Two runs: sd of the two means is |difference| / sqrt(2).
    assert row["sd_of_mean_diff"] == pytest.approx(abs(0.04 - 0.08) / np.sqrt(2))
    # The difference moves by 0.04 in both cells (variance 0.0008 each): pooled sd sqrt(0.0008).
    assert row["sd_cell_diff"] == pytest.approx(np.sqrt(0.0008))
    assert row["sd_of_mean_from_cells"] == pytest.approx(np.sqrt(0.0008) / np.sqrt(2))
    # x keeps its sign, y flips.
    assert row["same_sign_cells"] == pytest.approx(0.5)
    # Verdict: mean of the 4 differences 0.06, se sqrt(0.0008 / 4), t = 4.24 on 2 x 1 df.
    assert row["mean_diff"] == pytest.approx(0.06)
    assert row["se_mean_diff"] == pytest.approx(np.sqrt(0.0008 / 4))
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(0.06 / np.sqrt(0.0002), 2))
    assert 0.04 < row["p_value"] < 0.06
    with pytest.raises(ValueError, match="at least two"):
        seed_noise_table({"s1": run_a})


def test_significance_table_one_cell_equals_paired_bootstrap() -> None:
    rng = np.random.default_rng(3)
    counts = {("bc", "lstm", m): rng.integers(0, 6, size=(300, 3)) for m in ("packd", "no_kd")}
    row = significance_table(counts, n_draws=200, seed=7).iloc[0]
    direct = paired_bootstrap(
        [(counts[("bc", "lstm", "packd")], counts[("bc", "lstm", "no_kd")])], n_draws=200, seed=7
    )
    assert row["comparison"] == "packd - no_kd"
    for column in ("mean_f1_difference", "ci95_low", "ci95_high", "share_of_draws_above_0"):
        assert row[column] == pytest.approx(direct[column])
    counts[("bc", "mixer", "packd")] = rng.integers(0, 6, size=(299, 3))
    with pytest.raises(ValueError, match="different test sets"):
        significance_table(counts, n_draws=10)


def paired_bootstrap(
    cells: Sequence[tuple[np.ndarray, np.ndarray]], n_draws: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Mean over cells of F1(a) - F1(b), with a 95% interval from resampling test samples.

    Each cell (an app and arch) holds per-sample counts of models a and b on the same test
    samples; both are resampled with the same indices, so the interval reflects how much the
    difference depends on which test samples were drawn. Cells are resampled independently.
    """
    rng = np.random.default_rng(seed)
    differences = np.zeros(n_draws)
    observed = 0.0
    for counts_a, counts_b in cells:
        weights = _bootstrap_weights(rng, len(counts_a), n_draws)
        differences += _bootstrap_f1(counts_a, weights) - _bootstrap_f1(counts_b, weights)
        observed += f1_from_counts(counts_a) - f1_from_counts(counts_b)
    return _bootstrap_summary(observed / len(cells), differences / len(cells), len(cells))
