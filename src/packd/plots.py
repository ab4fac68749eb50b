"""The workflow's figures (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from packd.atomic import atomic_path  # noqa: E402
from packd.methods import METHODS, method_color, method_rank  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    """Save through a temporary name so an interrupted job leaves no half-written figure."""
    try:
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)


def plot_trace(trace: pd.DataFrame, title: str, path: Path, delta_bound: int = 128) -> None:
    """Block address over time and the histogram of consecutive block deltas."""
    blocks = (trace["addr"].to_numpy(np.uint64) >> np.uint64(6)).astype(np.int64)
    figure, (over_time, histogram) = plt.subplots(1, 2, figsize=(12, 4))
    step = max(1, len(blocks) // 200_000)  # keep the scatter readable and the PNG small
    over_time.scatter(
        np.arange(len(blocks))[::step], blocks[::step], s=0.2, alpha=0.4, rasterized=True
    )
    # Heap and stack lie terabytes apart: zoom on the central 98% of accesses and say so.
    low, high = np.quantile(blocks, [0.01, 0.99])
    margin = max(1.0, 0.02 * (high - low))
    over_time.set_ylim(low - margin, high + margin)
    outside = int(np.count_nonzero((blocks < low - margin) | (blocks > high + margin)))
    over_time.set_xlabel("LLC access")
    over_time.set_ylabel("block address (addr >> 6)")
    over_time.set_title(f"{title}: {len(blocks):,} LLC accesses ({outside:,} off the scale)")
    deltas = np.diff(blocks)
    in_range = deltas[(deltas != 0) & (np.abs(deltas) <= delta_bound)]
    histogram.hist(in_range, bins=np.arange(-delta_bound, delta_bound + 2) - 0.5, color="#555555")
    histogram.set_yscale("log")
    histogram.set_xlabel("delta between consecutive block addresses")
    share = 100 * len(in_range) / max(1, len(deltas))
    histogram.set_title(f"deltas within +-{delta_bound} (non-zero): {share:.1f}% of all")
    _save(figure, path)


def plot_cluster_sizes(sizes: pd.DataFrame, title: str, path: Path) -> None:
    """Samples per cluster, one bar group per split."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    sizes.plot.bar(ax=axes)
    axes.set_xlabel("cluster")
    axes.set_ylabel("samples")
    axes.set_title(title)
    _save(figure, path)


def plot_main_f1(table: pd.DataFrame, path: Path) -> None:
    """Test micro-F1 per app, one panel per arch, one bar per method."""
    rows = table[table["protocol"] == "validation"]
    archs = sorted(rows["arch"].unique())
    figure, panels = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4), squeeze=False)
    for panel, arch in zip(panels[0], archs, strict=True):
        wide = rows[rows["arch"] == arch].pivot(index="app", columns="method", values="f1")
        wide = wide[[method for method in METHODS if method in wide.columns]]
        wide.plot.bar(
            ax=panel,
            color=[method_color(method) for method in wide.columns],
            legend=False,
        )
        panel.set_title(arch)
        panel.set_ylabel("test micro-F1 (threshold from validation)")
        panel.set_ylim(0, 1)
    # One legend below the panels, where it covers no bar.
    handles, labels = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.subplots_adjust(bottom=0.28)
    _save(figure, path)


def plot_training_curves(metrics: Sequence[dict], path: Path) -> None:
    """Validation F1 per epoch: one panel per arch, one line per model and app."""
    archs = sorted({entry["arch"] for entry in metrics})
    figure, panels = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4), squeeze=False)
    for panel, arch in zip(panels[0], archs, strict=True):
        for entry in metrics:
            if entry["arch"] != arch:
                continue
            for history in entry["histories"]:
                epochs = [epoch["epoch"] for epoch in history]
                scores = [epoch["val_f1"] for epoch in history]
                panel.plot(
                    epochs,
                    scores,
                    color=method_color(entry["method"]),
                    alpha=0.6,
                    linewidth=1,
                )
        for method in sorted({entry["method"] for entry in metrics}, key=method_rank):
            panel.plot([], [], color=method_color(method), label=method)
        panel.set_title(arch)
        panel.set_xlabel("epoch")
        panel.set_ylabel("validation micro-F1")
        panel.legend(fontsize=7)
    _save(figure, path)


def plot_sweep(table: pd.DataFrame, sweep: str, path: Path) -> None:
    """Mean PaCKD student F1 over apps against the swept setting, one line per arch."""
    figure, axes = plt.subplots(figsize=(6, 4))
    if sweep == "kd":
        table = table.assign(
            setting=[
                f"a={a:g}, T={t:g}"
                for a, t in zip(table["alpha"], table["temperature"], strict=True)
            ]
        )
        key = "setting"
    else:
        key = sweep
    means = table.groupby(["arch", key], sort=False)["f1"].mean().reset_index()
    for arch, rows in means.groupby("arch"):
        axes.plot(rows[key].astype(str), rows["f1"], marker="o", label=arch)
    axes.set_xlabel({"k": "clusters k", "features": "feature set", "kd": "alpha and T"}[sweep])
    axes.set_ylabel("PaCKD student test micro-F1 (mean over apps)")
    axes.legend()
    if sweep == "kd":
        axes.tick_params(axis="x", rotation=45)
    _save(figure, path)
