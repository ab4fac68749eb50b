"""benchmarks_scripts/validation_size.py: the kept epoch's figure and the comparison summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks_scripts/validation_size.py"


def _load_script():
    return load_script(SCRIPT, "validation_size_bench")


def test_the_figure_is_the_kept_epochs_test_f1_at_its_validation_threshold() -> None:
    bench = _load_script()
    header = {
        "best_epoch": 2,
        "history": [
            {"epoch": 1, "test_f1_val_threshold": 0.30, "test_f1_best_threshold": 0.40},
            {"epoch": 2, "test_f1_val_threshold": 0.31, "test_f1_best_threshold": 0.33},
            {"epoch": 3, "test_f1_val_threshold": 0.35, "test_f1_best_threshold": 0.36},
        ],
    }
    assert bench.kept_test_f1(header) == 0.31


def test_a_comparison_is_the_seed_unit_t_interval_of_the_mean_over_cells() -> None:
    bench = _load_script()
    # packd - no_kd is 0.01 + seed noise in bc and 0.03 in sssp; each seed's mean over cells
    noise = {1: 0.004, 2: -0.002, 3: 0.001, 4: -0.003}
    rows = []
    for seed, shift in noise.items():
        for app, gap in (("bc", 0.01), ("sssp", 0.03)):
            for method, f1 in (
                ("no_kd", 0.3),
                ("standard_kd", 0.3 + gap / 2),
                ("packd", 0.3 + gap + shift),
            ):
                rows.append(
                    {"seed": seed, "app": app, "arch": "resnet", "method": method, "f1": f1}
                )
    summary = bench.comparison_summary(pd.DataFrame(rows))
    per_seed = np.array([0.02 + shift for shift in noise.values()])
    sd = per_seed.std(ddof=1)
    assert summary.loc["packd - no_kd", "mean"] == pytest.approx(per_seed.mean())
    assert summary.loc["packd - no_kd", "sd"] == pytest.approx(sd)
    width = 2 * stats.t.ppf(0.975, 3) * sd / np.sqrt(4)
    assert summary.loc["packd - no_kd", "width"] == pytest.approx(width)
    # standard_kd - no_kd is the same in every seed: no spread
    assert summary.loc["standard_kd - no_kd", "sd"] == pytest.approx(0.0, abs=1e-12)
    assert summary.loc["standard_kd - no_kd", "mean"] == pytest.approx(0.01)


def test_each_rule_replaces_one_validation_choice() -> None:
    bench = _load_script()
    header = {
        "best_epoch": 2,
        "history": [
            {"epoch": 1, "test_f1_val_threshold": 0.30, "test_f1_best_threshold": 0.40},
            {"epoch": 2, "test_f1_val_threshold": 0.31, "test_f1_best_threshold": 0.33},
            {"epoch": 3, "test_f1_val_threshold": 0.35, "test_f1_best_threshold": 0.36},
        ],
    }
    assert bench.rule_scores(header) == {
        "kept epoch, val threshold": 0.31,
        "kept epoch, test-best threshold": 0.33,
        "last epoch, val threshold": 0.35,
        "last epoch, test-best threshold": 0.36,
    }


def test_render_reports_every_rules_sd() -> None:
    bench = _load_script()
    rng = np.random.default_rng(0)
    rows = [
        {"seed": seed, "app": app, "arch": "resnet", "method": method}
        | {rule: 0.3 + rng.normal(0, 0.01) for rule in bench.RULES}
        for seed in (1, 2, 3)
        for app in ("bc", "sssp")
        for method in bench.METHODS
    ]
    scores = pd.DataFrame(rows)
    text = bench.render({"the run": scores})
    sd = bench.comparison_summary(scores, "last epoch, test-best threshold").loc[
        "packd - no_kd", "sd"
    ]
    assert f"{sd:.4f}" in text.split("seed sd")[1]
    assert all(rule in text for rule in bench.RULES)
