"""Tables: the long-form main table, its summary over seeds, and significance by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from packd.tables import (
    compression_table,
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
        "seed": 1,
        "val_f1": f1,
        "average_precision": f1,
        "precision_at_degree": f1,
        "recall_at_degree": f1,
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


def _seeded_table(differences: dict[int, list[float]]) -> pd.DataFrame:
    """Main-table rows: no_kd at 0.5 in every cell; packd at 0.5 + the seed's cell differences."""
    rows = []
    for seed, cell_differences in differences.items():
        for (app, arch), difference in zip(
            [("bc", "lstm"), ("pr", "lstm"), ("bc", "mixer"), ("pr", "mixer")],
            cell_differences,
            strict=True,
        ):
            for method, f1 in (("no_kd", 0.5), ("packd", 0.5 + difference)):
                rows.append(
                    {"app": app, "arch": arch, "method": method, "seed": seed, "f1": f1,
                     "protocol": "validation"}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_significance_takes_the_seed_as_the_unit() -> None:
    table = _seeded_table({1: [0.01, 0.03, 0.02, 0.02], 2: [0.02, 0.02, 0.04, 0.04]})
    result = significance_table(table).set_index(["comparison", "arch"])
    row = result.loc[("packd - no_kd", "all")]
    # Per-seed means over the 4 cells: 0.02 and 0.03; the test is on these two numbers only.
    assert row["seed1"] == pytest.approx(0.02) and row["seed2"] == pytest.approx(0.03)
    assert row["seeds"] == 2 and row["cells"] == 4
    assert row["mean_f1_difference"] == pytest.approx(0.025)
    assert row["sd_over_seeds"] == pytest.approx(0.01 / np.sqrt(2))
    t_value = 0.025 / (0.01 / np.sqrt(2) / np.sqrt(2))
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(t_value, 1))
    assert row["ci95_low"] < 0.025 < row["ci95_high"]
    lstm = result.loc[("packd - no_kd", "lstm")]
    assert lstm["seed1"] == pytest.approx(0.02) and lstm["cells"] == 2
    # Counted as 8 independent cells, the same numbers would look far more certain.
    cells = np.array([0.01, 0.03, 0.02, 0.02, 0.02, 0.02, 0.04, 0.04])
    assert stats.ttest_1samp(cells, 0).pvalue < row["p_value"]


def test_significance_with_one_seed_has_no_test() -> None:
    result = significance_table(_seeded_table({3: [0.01, 0.03, 0.02, 0.02]}))
    assert result["p_value"].isna().all() and (result["seeds"] == 1).all()


def test_seed_noise_table_measures_spread_and_sign_agreement() -> None:
    # cell x: +0.10 then +0.14; cell y: -0.02 then +0.02 (the sign flips)
    table = _seeded_table({1: [0.10, -0.02, 0.0, 0.0], 2: [0.14, 0.02, 0.0, 0.0]})
    row = seed_noise_table(table).set_index("comparison").loc["packd - no_kd"]
    assert row["cells"] == 4
    assert row["mean_diff_seed1"] == pytest.approx(0.02)
    assert row["mean_diff_seed2"] == pytest.approx(0.04)
    assert row["sd_of_mean_diff"] == pytest.approx(0.02 / np.sqrt(2))
    # x and y move by 0.04 (variance 0.0008 each), the two zero cells not at all
    assert row["sd_cell_diff"] == pytest.approx(np.sqrt(0.0016 / 4))
    # x keeps its sign, y flips, the zero cells keep theirs
    assert row["same_sign_cells"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least two"):
        seed_noise_table(table[table["seed"] == 1])


def test_frontier_table_averages_apps_then_seeds() -> None:
    from packd.tables import frontier_table

    metrics = [
        {"arch": "lstm", "method": method, "seed": seed, "app": app, "params": params, "f1": f1}
        for method, params in (
            ("roast-x0.5", 500),
            ("roast", 1000),
            ("teacher", 90_000),
            ("no_kd", 1000),
            ("hashednet-x0.5", 1000),
            ("no_kd-x4", 4100),
        )  # fmt: skip
        for seed in (1, 2)
        for app, f1 in (("bc", 0.2 + 0.1 * seed), ("pr", 0.6))
    ]
    table = frontier_table(metrics).set_index(["method", "budget_factor"])
    assert list(table.index) == [
        ("teacher", 1.0), ("no_kd", 1.0), ("no_kd", 4.0), ("roast", 0.5), ("roast", 1.0),
        ("hashednet", 0.5),
    ]  # fmt: skip
    # asked 0.5 x 1000: HashedNet's 1000 is above it (its smallest budget), ROAST's 500 is not;
    # no KD's closest width at 4x (4100 for 4000) is within the slack
    assert table["above_budget"].tolist() == [False, False, False, False, False, True]
    row = table.loc[("roast", 0.5)]
    # per seed: (0.3 + 0.6) / 2 = 0.45 and (0.4 + 0.6) / 2 = 0.5
    assert row["f1"] == pytest.approx(0.475) and row["seeds"] == 2
    assert row["f1_sd"] == pytest.approx(np.std([0.45, 0.5], ddof=1))
    assert row["params"] == 500


def test_compression_table_names_each_rows_seed_and_averages_over_them() -> None:
    entries = [
        metrics_entry("bc", "lstm", method, 0.4, params) | {"seed": seed, "latency_b1_s": latency}
        for seed, latency in ((1, 1e-4), (2, 3e-4))
        for method, params in (("teacher", 100_000), ("packd", 1_000))
    ]
    compression = compression_table(main_table(entries))
    packd = compression[compression["method"] == "packd"]
    assert packd["seed"].tolist()[:2] == [1, 2]
    mean = packd[packd["app"] == "mean"].iloc[0]
    assert mean["latency_b1_us"] == pytest.approx(200.0)
    assert mean["compression"] == pytest.approx(100.0)
