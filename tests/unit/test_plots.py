"""Figures: the axes fit the intervals they draw, the seeds are named, log axes stay legible."""

from __future__ import annotations

from pathlib import Path

import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from packd.plots import f1_differences, plot_frontier, plot_main_f1, plot_sweep


def _main_rows(differences: dict[str, dict[int, list[float]]]) -> pd.DataFrame:
    """Validation rows: no KD at 0.5 in every (app, arch) cell; each other method at 0.5 plus
    its per-seed cell differences (cells: lstm bc, lstm pr, mixer bc, mixer pr)."""
    cells = [("bc", "lstm"), ("pr", "lstm"), ("bc", "mixer"), ("pr", "mixer")]
    rows = []
    seeds = sorted({seed for per_seed in differences.values() for seed in per_seed})
    for seed in seeds:
        for app, arch in cells:
            rows.append({"app": app, "arch": arch, "method": "no_kd", "seed": seed, "f1": 0.5,
                         "protocol": "validation"})  # fmt: skip
        for method, per_seed in differences.items():
            for (app, arch), difference in zip(cells, per_seed[seed], strict=True):
                rows.append({"app": app, "arch": arch, "method": method, "seed": seed,
                             "f1": 0.5 + difference, "protocol": "validation"})  # fmt: skip
    return pd.DataFrame(rows)


def test_f1_differences_interval_of_the_seed_unit_paired_difference() -> None:
    # packd - no_kd in lstm/bc: 0.01, 0.03 over two seeds: mean 0.02, sd 0.01 * sqrt(2)
    table = _main_rows({"packd": {1: [0.01, 0.0, 0.0, 0.0], 2: [0.03, 0.0, 0.0, 0.0]}})
    summary = f1_differences(table).set_index(["arch", "app", "method"])
    row = summary.loc[("lstm", "bc", "packd")]
    half = 12.706205 * 0.01 * np.sqrt(2) / np.sqrt(2)  # t(0.975, 1 df) x sd / sqrt(n)
    assert row["count"] == 2 and row["mean"] == pytest.approx(0.02)
    assert row["ci95_low"] == pytest.approx(0.02 - half, rel=1e-6)
    assert row["ci95_high"] == pytest.approx(0.02 + half, rel=1e-6)
    # The same difference in both seeds: a zero-width interval, not a missing one
    flat = summary.loc[("mixer", "pr", "packd")]
    assert flat["half_width"] == 0 and flat["ci95_low"] == flat["ci95_high"] == 0


def test_main_figure_axis_holds_every_interval_and_names_the_seeds(tmp_path: Path) -> None:
    # Effects of about 0.02 with intervals near +-0.2 (two seeds, t with 1 df)
    table = _main_rows(
        {
            "packd": {1: [0.01, 0.03, -0.02, 0.0], 2: [0.03, 0.01, 0.02, 0.04]},
            "teacher": {1: [0.10, 0.12, 0.08, 0.2], 2: [0.14, 0.10, 0.09, 0.15]},
        }
    )
    path = tmp_path / "main.png"
    figure = plot_main_f1(table, path)
    assert path.exists()
    summary = f1_differences(table)
    panels = figure.axes
    assert [panel.get_title() for panel in panels] == ["lstm", "mixer"]
    for panel in panels:
        rows = summary[summary["arch"] == panel.get_title()]
        low, high = panel.get_ylim()
        assert low <= rows["ci95_low"].min() and rows["ci95_high"].max() <= high
        assert low <= 0 <= high
        # Fitted to the intervals, not a fixed 0-1 axis
        assert high - low < 1.5 * (rows["ci95_high"].max() - rows["ci95_low"].min())
    title = figure._suptitle.get_text()
    assert "2 seeds" in title and "95% t interval" in title and "seed as unit" in title


def test_main_figure_with_one_seed_has_no_interval(tmp_path: Path) -> None:
    table = _main_rows({"packd": {1: [0.01, 0.03, -0.02, 0.0]}})
    figure = plot_main_f1(table, tmp_path / "main.png")
    assert "1 seed;" in figure._suptitle.get_text() and "no interval" in figure._suptitle.get_text()
    low, high = figure.axes[0].get_ylim()
    assert low < 0 < 0.03 < high


def test_sweep_figure_draws_the_spread_over_seeds(tmp_path: Path) -> None:
    rows = [(1, "bc", "lstm", 2, 0.40), (2, "bc", "lstm", 2, 0.50), (1, "bc", "lstm", 3, 0.30),
            (2, "bc", "lstm", 3, 0.36)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["seed", "app", "arch", "k", "f1"])
    figure = plot_sweep(table, "k", tmp_path / "sweep.png")
    axes = figure.axes[0]
    assert "2 seeds" in axes.get_title() and "sd over seeds" in axes.get_title()
    # One error-bar container, its bars spanning mean +- sd: 0.45 +- 0.0707 and 0.33 +- 0.0424
    (container,) = axes.containers
    _, _, (bars,) = container.lines
    spans = sorted(high - low for (_, low), (_, high) in bars.get_segments())
    assert spans == pytest.approx([2 * np.sqrt(0.0018), 2 * np.sqrt(0.005)])


def _frontier_table() -> pd.DataFrame:
    rows = [("teacher", 1.0, 250_000, 0.60), ("no_kd", 1.0, 2_000, 0.40),
            ("no_kd", 4.0, 8_000, 0.45), ("roast", 0.5, 1_000, 0.38), ("roast", 4.0, 8_100, 0.44),
            ("packd", 1.0, 2_000, 0.42)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["method", "budget_factor", "params", "f1"])
    return table.assign(arch="lstm", f1_sd=0.01, seeds=2, above_budget=False)


def test_frontier_log_axis_has_no_minor_labels_and_the_teacher_is_the_ceiling(
    tmp_path: Path,
) -> None:
    table = _frontier_table()
    figure = plot_frontier(table, tmp_path / "frontier.png")
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    # Every method at its real size, the teacher's 250k included
    low, high = axes.get_xlim()
    assert low <= table["params"].min() and table["params"].max() <= high
    # No minor tick labels; the major ones (few, plain) do not run into each other
    assert isinstance(axes.xaxis.get_minor_formatter(), ticker.NullFormatter)
    canvas = FigureCanvasAgg(figure)  # the saved figure is closed: draw it on a fresh canvas
    canvas.draw()
    assert all(label.get_text() == "" for label in axes.xaxis.get_minorticklabels())
    renderer = canvas.get_renderer()
    labels = [label for label in axes.xaxis.get_majorticklabels()
              if label.get_text() and low <= label.get_position()[0] <= high]  # fmt: skip
    assert 2 <= len(labels) <= 6
    assert [label.get_text() for label in labels] == ["1k", "10k", "100k"]
    boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda b: b.x0)
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:], strict=False))
    # The teacher's F1 as a horizontal line labelled as the ceiling
    (ceiling,) = [line for line in axes.get_lines() if "ceiling" in line.get_label()]
    assert list(ceiling.get_ydata()) == [0.60, 0.60]
    assert any("ceiling" in text.get_text() for text in axes.texts)
