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
