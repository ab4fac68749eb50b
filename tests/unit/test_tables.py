"""Tables: the long-form main table, its summary over seeds, and significance by seed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from packd.methods import BudgetVariant, SweepVariant, variant_of
from packd.tables import (
    COLLAPSE_F1_MARGIN,
    PRIOR_TOP_K_DIFFERS,
    collapsed_cells,
    compression_table,
    holm_adjust,
    learnability_markdown,
    learnability_summary,
    learnability_table,
    main_summary,
    main_table,
    prior_top_k_cells,
    relative_improvement,
    seed_noise_table,
    significance_table,
    sweep_table,
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
    assert result["p_holm"].isna().all() and not result["significant_holm"].any()
    assert result["ci95_low"].isna().all() and (result["holm_tests"] == 0).all()
    assert result["note"].str.contains("no test").all()


def test_holm_step_down_on_hand_made_p_values() -> None:
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (the
    # running maximum). At 0.05: 0.005 <= 0.05/4 and 0.01 <= 0.05/3 are rejected; 0.03 > 0.05/2
    # stops the step-down, so 0.04 is kept too although 0.04 <= 0.05/1.
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (adjusted <= 0.05).tolist() == [True, False, False, True]
    # Capped at 1; NaN (no test) stays NaN and does not count in the family (m = 2 here)
    assert holm_adjust([0.6, np.nan, 0.2]).tolist() == pytest.approx([0.6, np.nan, 0.4],
                                                                     nan_ok=True)  # fmt: skip
    assert holm_adjust([0.7, 0.9]).tolist() == pytest.approx([1.0, 1.0])
    assert np.isnan(holm_adjust([np.nan])).all() and len(holm_adjust([])) == 0


def _t_sf_2df(t_value: float) -> float:
    """Two-sided p of t with 2 degrees of freedom, in closed form: 1 - t / sqrt(t^2 + 2)."""
    return 1 - t_value / np.sqrt(t_value**2 + 2)


def test_significance_interval_and_holm_over_the_whole_table() -> None:
    # Cells (lstm bc, lstm pr, mixer bc, mixer pr) in three seeds; per-seed means:
    #   lstm 0.02, 0.03, 0.04; mixer 0.02, 0.04, 0.03 (mean 0.03, sd 0.01 each);
    #   all  0.02, 0.035, 0.035 (mean 0.03, sd sqrt(0.000075) = 0.00866).
    table = _seeded_table({1: [0.01, 0.03, 0.02, 0.02], 2: [0.02, 0.04, 0.03, 0.05],
                           3: [0.04, 0.04, 0.03, 0.03]})  # fmt: skip
    result = significance_table(table).set_index("arch")
    lstm = result.loc["lstm"]
    assert lstm["seeds"] == 3
    assert lstm["mean_f1_difference"] == pytest.approx(0.03)
    assert lstm["sd_over_seeds"] == pytest.approx(0.01)
    # t(0.975, 2 df) = 0.95 * sqrt(2 / (4 * 0.975 * 0.025)) = 4.302653
    half = 0.95 * np.sqrt(2 / 0.0975) * 0.01 / np.sqrt(3)
    assert half == pytest.approx(0.024841, abs=1e-6)
    assert lstm["ci95_low"] == pytest.approx(0.03 - half)
    assert lstm["ci95_high"] == pytest.approx(0.03 + half)
    p_arch = _t_sf_2df(0.03 / (0.01 / np.sqrt(3)))  # t = sqrt(27): p = 0.0351
    p_all = _t_sf_2df(0.03 / (np.sqrt(0.000075) / np.sqrt(3)))  # t = 6: p = 0.0267
    assert lstm["p_value"] == pytest.approx(p_arch) and p_arch == pytest.approx(0.0351, abs=1e-4)
    assert result.loc["all", "p_value"] == pytest.approx(p_all)
    # The family is the whole table (m = 3): 3 x 0.0267 = 0.080, 2 x 0.0351 = 0.070 -> 0.080
    # (running maximum), 1 x 0.0351 -> 0.080. All three raw p < 0.05; none survives Holm.
    assert (result["holm_tests"] == 3).all()
    assert result["p_holm"].tolist() == pytest.approx([3 * p_all] * 3)
    assert not result["significant_holm"].any()
    assert (result["p_value"] < 0.05).all()


def test_significance_with_zero_sd_reports_no_p() -> None:
    # lstm: +0.02 in both seeds (sd 0, t = 0.02 / 0 undefined); all and mixer vary
    table = _seeded_table({1: [0.02, 0.02, 0.01, 0.03], 2: [0.02, 0.02, 0.04, 0.04]})
    result = significance_table(table).set_index("arch")
    lstm = result.loc["lstm"]
    assert lstm["sd_over_seeds"] == 0 and np.isnan(lstm["p_value"]) and np.isnan(lstm["p_holm"])
    assert not lstm["significant_holm"]
    assert lstm["ci95_low"] == pytest.approx(0.02) and lstm["ci95_high"] == pytest.approx(0.02)
    assert "sd 0" in lstm["note"] and "no test" in lstm["note"]
    # Only the two real tests form the family
    assert (result["holm_tests"] == 2).all()
    assert result.loc["mixer", "p_value"] > 0 and result.loc["mixer", "note"] == ""
    assert result.loc[["all", "mixer"], "p_holm"].notna().all()
    # No difference at all in any seed: no test either (not p = 1)
    flat = significance_table(_seeded_table({1: [0.0] * 4, 2: [0.0] * 4}))
    assert flat["p_value"].isna().all() and (flat["holm_tests"] == 0).all()


def test_sweep_table_gives_the_spread_over_seeds_beside_each_f1() -> None:
    variants = [SweepVariant("a", k, 0.5, 1.0) for k in (2, 3)]
    entries = [
        metrics_entry(app, "lstm", variants[k - 2].name, f1, 1_000) | {"seed": seed}
        for app, k, seed, f1 in (("bc", 2, 1, 0.40), ("bc", 2, 2, 0.50), ("pr", 2, 1, 0.60),
                                 ("bc", 3, 1, 0.30), ("bc", 3, 2, 0.30))
    ]  # fmt: skip
    table = sweep_table(entries, "k", variants)
    # The settings are the variants' (as data), each its name's
    assert table[["features", "k", "alpha", "temperature"]].drop_duplicates().values.tolist() == [
        ["a", 2, 0.5, 1.0], ["a", 3, 0.5, 1.0]
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a variant of the k sweep"):
        sweep_table(entries, "k", variants[:1])
    columns = list(table.columns)
    assert columns[columns.index("f1") + 1 :][:3] == ["f1_mean_over_seeds", "f1_sd_over_seeds",
                                                      "seeds"]  # fmt: skip
    bc2 = table[(table["app"] == "bc") & (table["k"] == 2)]
    assert bc2["seed"].tolist() == [1, 2] and bc2["f1"].tolist() == [0.40, 0.50]
    assert bc2["f1_mean_over_seeds"].tolist() == pytest.approx([0.45, 0.45])
    assert bc2["f1_sd_over_seeds"].tolist() == pytest.approx([np.sqrt(0.005)] * 2)
    assert (bc2["seeds"] == 2).all()
    pr2 = table[(table["app"] == "pr")].iloc[0]
    assert pr2["seeds"] == 1 and np.isnan(pr2["f1_sd_over_seeds"])
    bc3 = table[(table["app"] == "bc") & (table["k"] == 3)]
    assert (bc3["f1_sd_over_seeds"] == 0).all()


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
            ("blockwise", 45_000),
            ("no_kd-xblockwise", 45_500),
        )  # fmt: skip
        for seed in (1, 2)
        for app, f1 in (("bc", 0.2 + 0.1 * seed), ("pr", 0.6))
    ]
    # The frontier's models as the DAG lists them: budget variants, and those at their own size
    models = [
        variant_of(name) or BudgetVariant(name, 1.0) for name in {m["method"] for m in metrics}
    ]
    table = frontier_table(metrics, models).set_index(["method", "budget_factor"])
    assert list(table.index) == [
        ("teacher", 1.0), ("no_kd", 1.0), ("no_kd", 4.0), ("no_kd", 45.5), ("roast", 0.5),
        ("roast", 1.0), ("hashednet", 0.5), ("blockwise", 1.0),
    ]  # fmt: skip
    # asked 0.5 x 1000: HashedNet's 1000 is above it (its smallest budget), ROAST's 500 is not;
    # no KD's closest width at 4x (4100 for 4000) is within the slack; the no-KD student at the
    # blockwise student's size is at its own count (factor: that count over the student's)
    assert table["above_budget"].tolist() == [False] * 6 + [True, False]
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


def _learnability_entries(
    cells: dict[tuple[int, str], dict[str, tuple[float, float, float | None]]],
) -> list[dict]:
    """Metrics entries: per (seed, app) cell of arch lstm, each method's (test F1, validation F1,
    top-k differs fraction; None: the metrics lack it)."""
    entries = []
    for (seed, app), methods in cells.items():
        for method, (f1, val_f1, differs) in methods.items():
            entry = metrics_entry(app, "lstm", method, f1, 1_000)
            entry.update(seed=seed, val_f1=val_f1)
            if differs is not None:
                entry["top_k_differs_from_frequency"] = differs
            entries.append(entry)
    return entries


def test_main_table_has_the_top_k_comparison_or_nan() -> None:
    entries = _learnability_entries(
        {(1, "bc"): {"teacher": (0.5, 0.5, 0.6), "no_kd": (0.4, 0.4, None)}}
    )
    rows = main_table(entries).set_index(["method", "protocol"])
    assert "top_k_differs_from_frequency" in rows.columns
    # The same figure on both protocols' rows (the top k does not depend on the threshold)
    assert rows.loc[("teacher", "validation"), "top_k_differs_from_frequency"] == 0.6
    assert rows.loc[("teacher", "test_selected"), "top_k_differs_from_frequency"] == 0.6
    assert np.isnan(rows.loc[("no_kd", "validation"), "top_k_differs_from_frequency"])


def test_learnability_table_gaps_and_collapse_flags() -> None:
    entries = _learnability_entries(
        {
            # learned: well above the prior, top-k differs on 60% of samples
            (1, "bc"): {"teacher": (0.50, 0.55, 0.60), "frequency": (0.40, 0.42, 0.0),
                        "no_kd": (0.45, 0.47, 0.30), "packd": (0.47, 0.48, 0.4)},
            # F1 barely above the frequency baseline's, though top-k differs often
            (1, "pr"): {"teacher": (0.405, 0.41, 0.50), "frequency": (0.40, 0.40, 0.0),
                        "no_kd": (0.41, 0.40, 0.20)},
            # well above in F1, but the same top-k as the prior on 95% of samples
            (2, "bc"): {"teacher": (0.60, 0.61, 0.05), "frequency": (0.40, 0.41, 0.0),
                        "no_kd": (0.50, 0.52, 0.01)},
        }
    )  # fmt: skip
    table = learnability_table(main_table(entries))
    assert list(table[["seed", "app"]].itertuples(index=False, name=None)) == [
        (1, "bc"), (1, "pr"), (2, "bc"),
    ]  # fmt: skip
    rows = table.set_index(["seed", "app"])
    learned = rows.loc[(1, "bc")]
    assert learned["teacher_f1"] == pytest.approx(0.50)
    assert learned["teacher_minus_frequency_f1"] == pytest.approx(0.10)
    assert learned["teacher_minus_no_kd_f1"] == pytest.approx(0.05)
    assert learned["teacher_minus_frequency_val_f1"] == pytest.approx(0.13)
    assert learned["teacher_minus_no_kd_val_f1"] == pytest.approx(0.08)
    assert learned["teacher_top_k_differs"] == 0.60 and learned["no_kd_top_k_differs"] == 0.30
    assert not learned["collapsed"] and learned["collapse_reason"] == ""
    assert not learned["top_k_is_prior"] and learned["missing"] == ""
    flat_f1 = rows.loc[(1, "pr")]
    assert flat_f1["teacher_minus_frequency_f1"] == pytest.approx(0.005)
    assert flat_f1["teacher_minus_frequency_f1"] < COLLAPSE_F1_MARGIN
    assert flat_f1["collapsed"]
    assert flat_f1["collapse_reason"] == "test F1 only +0.0050 above the frequency baseline"
    assert not flat_f1["top_k_is_prior"]  # its top-k differs on half of the samples
    # Learned (F1 +0.20 over the prior), so not collapsed, but flagged for its top-k
    flat_top_k = rows.loc[(2, "bc")]
    assert flat_top_k["teacher_top_k_differs"] < PRIOR_TOP_K_DIFFERS
    assert not flat_top_k["collapsed"] and flat_top_k["collapse_reason"] == ""
    assert flat_top_k["top_k_is_prior"]
    summary = learnability_summary(table).set_index("measure")
    assert summary.loc["teacher_minus_frequency_f1", "mean_over_cells"] == pytest.approx(
        (0.10 + 0.005 + 0.20) / 3
    )
    assert summary.loc["teacher_minus_no_kd_f1", "mean_over_cells"] == pytest.approx(
        (0.05 - 0.005 + 0.10) / 3
    )
    assert summary.loc["teacher_top_k_differs", "mean_over_cells"] == pytest.approx(
        (0.60 + 0.50 + 0.05) / 3
    )
    assert (summary["cells"] == 3).all()
    markdown = learnability_markdown(table)
    assert "Collapsed to the label prior: 1 of 3 cells" in markdown
    assert "Top-k is the prior's: 1 of 3 cells" in markdown
    # The per-cell table, then the summary: the mean teacher - frequency gap over 3 cells
    assert markdown.index("collapse_reason") < markdown.index("mean_over_cells")
    assert "|0.1017|3|" in markdown.replace(" ", "")
    # Read back from the CSV (booleans and empty texts as pandas reads them)
    again = pd.read_csv(io.StringIO(table.to_csv(index=False)))
    assert collapsed_cells(again)[["seed", "app"]].values.tolist() == [[1, "pr"]]
    assert prior_top_k_cells(again)[["seed", "app"]].values.tolist() == [[2, "bc"]]


def test_learnability_table_with_a_method_missing_from_the_run() -> None:
    entries = _learnability_entries(
        {
            (1, "bc"): {"teacher": (0.50, 0.55, 0.02), "no_kd": (0.45, 0.47, 0.30)},
            (1, "pr"): {"teacher": (0.40, 0.41, None), "no_kd": (0.35, 0.36, None)},
        }
    )
    table = learnability_table(main_table(entries)).set_index(["seed", "app"])
    # No frequency model: its gaps are NaN, so only the top-k comparison can flag a cell
    assert table["teacher_minus_frequency_f1"].isna().all()
    assert table["teacher_minus_frequency_val_f1"].isna().all()
    assert table.loc[(1, "bc"), "teacher_minus_no_kd_f1"] == pytest.approx(0.05)
    assert not table["collapsed"].any()
    assert table.loc[(1, "bc"), "top_k_is_prior"]  # top-k the prior's on 98% of samples
    assert table.loc[(1, "bc"), "missing"] == "frequency"
    # Metrics without the top-k comparison either: nothing can flag it, and it says so
    assert not table.loc[(1, "pr"), "top_k_is_prior"]
    assert table.loc[(1, "pr"), "missing"] == "frequency top_k_differs_from_frequency"
    summary = learnability_summary(table.reset_index()).set_index("measure")
    assert np.isnan(summary.loc["teacher_minus_frequency_f1", "mean_over_cells"])
    assert summary.loc["teacher_minus_frequency_f1", "cells"] == 0
    assert summary.loc["teacher_top_k_differs", "cells"] == 1
    # Without no KD too, and without validation F1 in the table: NaN, not an error
    only_teacher = main_table(
        _learnability_entries({(1, "bc"): {"teacher": (0.5, 0.5, 0.5)}})
    ).drop(columns="val_f1")
    row = learnability_table(only_teacher).iloc[0]
    assert np.isnan(row["teacher_minus_no_kd_f1"]) and np.isnan(row["teacher_minus_no_kd_val_f1"])
    assert row["missing"] == "frequency no_kd" and not row["collapsed"]
    assert not row["top_k_is_prior"]
    # No teacher at all: an empty table with its columns
    assert learnability_table(main_table(_learnability_entries(
        {(1, "bc"): {"no_kd": (0.5, 0.5, 0.5)}}
    ))).empty  # fmt: skip
