"""benchmarks_scripts/batchnorm.py: epoch swings from checkpoint histories, two runs compared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from packd.checkpoint import save_checkpoint
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks_scripts/batchnorm.py"


def _load_script():
    return load_script(SCRIPT, "batchnorm_bench")


def _run(root: Path, swing: float, packd_gain: dict[int, float]) -> Path:
    """A finished run's files: packd and no_kd checkpoints of seeds 1-4 whose validation F1
    alternates by `swing` (packd keeps epoch 1), and a main table where packd - no_kd is
    packd_gain[seed] in both apps."""
    rows = []
    for seed, gain in packd_gain.items():
        for app, base in (("bc", 0.30), ("sssp", 0.50)):
            for method, f1 in (
                ("no_kd", base),
                ("packd", base + gain),
                ("teacher", base + 0.04),
                ("frequency", base - 0.03),
            ):
                rows.append(
                    {"protocol": "validation", "seed": seed, "app": app, "arch": "resnet"}
                    | {"method": method, "f1": f1}
                )
            for method, best_epoch in (("packd", 1), ("no_kd", 3)):
                history = [{"epoch": 0, "val_f1": 0.0}] + [
                    {"epoch": e, "val_f1": base + swing * (e % 2)} for e in range(1, 5)
                ]
                folder = root / f"results/students/seed{seed}/{app}/resnet"
                folder.mkdir(parents=True, exist_ok=True)
                header = {"history": history, "best_epoch": best_epoch}
                save_checkpoint(folder / f"{method}.pt", {"w": torch.zeros(1)}, header)
    (root / "results/tables").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "results/tables/main.csv", index=False)
    return root


def test_epoch_swing_is_the_mean_absolute_change() -> None:
    bench = _load_script()
    assert bench.epoch_swing([0.20, 0.25, 0.20, 0.21]) == pytest.approx((0.05 + 0.05 + 0.01) / 3)
    assert bench.epoch_swing([0.3]) != bench.epoch_swing([0.3])  # NaN: nothing to compare


def test_two_runs_are_compared_per_method(tmp_path: Path) -> None:
    bench = _load_script()
    before = _run(tmp_path / "before", 0.04, {1: 0.010, 2: -0.004, 3: 0.008, 4: 0.000})
    after = _run(tmp_path / "after", 0.01, {1: 0.004, 2: 0.003, 3: 0.005, 4: 0.004})
    tables = bench.compare(before, after)
    histories = tables["histories"]
    assert histories.loc["packd", ("before", "models")] == 8  # 4 seeds x 2 apps
    assert histories.loc["packd", ("before", "epoch_swing")] == pytest.approx(0.04)  # epoch 0 out
    assert histories.loc["no_kd", ("after", "epoch_swing")] == pytest.approx(0.01)
    assert histories.loc["packd", ("after", "kept_epoch_1")] == 1.0
    assert histories.loc["no_kd", ("after", "kept_epoch_1")] == 0.0
    assert "teacher" not in histories.index  # no teacher checkpoint in these runs
    assert tables["means"].loc["teacher - frequency", "after"] == pytest.approx(0.07)
    # the steadier run's packd - no_kd interval is the narrower
    width = tables["width"].loc["packd - no_kd"]
    assert width[("after", 4)] < width[("before", 4)]
    text = bench.render(tables, 0.01)
    assert "epoch_swing" in text and "packd - no_kd" in text


def test_a_run_without_a_main_table_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--before", str(tmp_path), "--after", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "no results/tables/main.csv" in result.stderr
