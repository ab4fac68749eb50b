"""The workflow's figures (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from packd.atomic import atomic_path  # noqa: E402
from packd.methods import method_color, method_label, method_rank  # noqa: E402
from packd.prefetch import CLASSIC_PREFETCHERS  # noqa: E402


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


def f1_differences(table: pd.DataFrame, baseline: str = "no_kd") -> pd.DataFrame:
    """Per (arch, app, method): mean over seeds of F1(method) - F1(baseline), its sd over seeds
    and a 95% t half-width (NaN with one seed); validation protocol."""
    rows = table[table["protocol"] == "validation"]
    wide = rows.pivot_table(index=["arch", "app", "seed"], columns="method", values="f1")
    differences = wide.drop(columns=[baseline]).sub(wide[baseline], axis=0)
    long = differences.stack().rename("difference").reset_index()
    grouped = long.groupby(["arch", "app", "method"])["difference"]
    summary = grouped.agg(["mean", "std", "count"]).reset_index()
    summary["half_width"] = [
        stats.t.ppf(0.975, count - 1) * sd / np.sqrt(count) if count > 1 else np.nan
        for sd, count in zip(summary["std"], summary["count"], strict=True)
    ]
    return summary


def plot_main_f1(table: pd.DataFrame, path: Path, baseline: str = "no_kd") -> None:
    """Each method's test F1 minus no KD's, per app (one panel per arch), with 95% intervals
    over seeds: differences of 0.002 are invisible on a 0-1 axis of bars."""
    summary = f1_differences(table, baseline)
    archs = sorted(summary["arch"].unique())
    methods = sorted(summary["method"].unique(), key=method_rank)
    figure, panels = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4.5), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for panel, arch in zip(panels[0], archs, strict=True):
        rows = summary[summary["arch"] == arch]
        apps = sorted(rows["app"].unique())
        for index, method in enumerate(methods):
            chosen = rows[rows["method"] == method].set_index("app").reindex(apps)
            positions = np.arange(len(apps)) + (index - (len(methods) - 1) / 2) * width
            panel.bar(
                positions,
                chosen["mean"],
                width,
                yerr=chosen["half_width"].fillna(0),
                color=method_color(method),
                label=method_label(method),
                capsize=2,
            )
        panel.axhline(0, color="black", linewidth=0.8)
        panel.set_xticks(np.arange(len(apps)), apps)
        panel.set_title(arch)
        panel.set_ylabel(f"test micro-F1 minus {method_label(baseline)}")
    handles, labels = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    figure.subplots_adjust(bottom=0.3)
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


CLASSIC_MARKERS = dict(zip(CLASSIC_PREFETCHERS, ("s", "^", "D", "<", ">"), strict=False))
ARCH_MARKERS = ("o", "P", "X", "v", "*")


def plot_prefetch(table: pd.DataFrame, path: Path) -> None:
    """Coverage against accuracy, a panel per app: a point per model (colour: method, marker:
    arch) and per classic prefetcher (black, its own marker)."""
    apps = sorted(table["app"].unique()) or ["(none)"]
    archs = sorted(table.loc[table["kind"] == "model", "arch"].unique())
    figure, panels = plt.subplots(
        1, len(apps), figsize=(4.5 * len(apps), 4.2), squeeze=False, sharey=True
    )
    for panel, app in zip(panels[0], apps, strict=True):
        rows = table[table["app"] == app]
        for _, row in rows[rows["kind"] == "model"].iterrows():
            panel.scatter(
                row["coverage"],
                row["accuracy"],
                color=method_color(row["name"]),
                marker=ARCH_MARKERS[archs.index(row["arch"]) % len(ARCH_MARKERS)],
                s=40,
                alpha=0.85,
            )
        # Classic rows repeat once per arch in the table: one point each.
        classic = rows[rows["kind"] == "classic"].drop_duplicates("name")
        for _, row in classic.iterrows():
            panel.scatter(
                row["coverage"],
                row["accuracy"],
                color="black",
                marker=CLASSIC_MARKERS.get(row["name"], "x"),
                s=50,
                facecolors="none",
            )
        panel.set_title(app)
        panel.set_xlabel("coverage (useful / baseline LLC misses)")
        panel.set_xlim(left=0)
        panel.set_ylim(0, 1)
    panels[0][0].set_ylabel("accuracy (useful / issued prefetches)")
    handles = [
        plt.Line2D([], [], color=method_color(name), marker="o", linestyle="", label=name)
        for name in sorted(table.loc[table["kind"] == "model", "name"].unique(), key=method_rank)
    ]
    handles += [
        plt.Line2D(
            [],
            [],
            color="grey",
            marker=ARCH_MARKERS[index % len(ARCH_MARKERS)],
            linestyle="",
            label=arch,
        )
        for index, arch in enumerate(archs)
    ]
    handles += [
        plt.Line2D(
            [], [], color="black", marker=marker, markerfacecolor="none", linestyle="", label=name
        )
        for name, marker in CLASSIC_MARKERS.items()
        if name in set(table.loc[table["kind"] == "classic", "name"])
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), frameon=False)
    figure.subplots_adjust(bottom=0.32)
    _save(figure, path)


def plot_frontier(table: pd.DataFrame, path: Path) -> None:
    """Test F1 against real parameter count (log scale), one panel per arch, one line per
    method over its budgets, error bars the sd over seeds; the teacher as a dashed ceiling."""
    archs = sorted(table["arch"].unique())
    figure, panels = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4.2), squeeze=False)
    for panel, arch in zip(panels[0], archs, strict=True):
        rows = table[table["arch"] == arch]
        for method, points in rows.groupby("method", sort=False):
            if method == "teacher":
                panel.axhline(
                    points["f1"].iloc[0], color=method_color(method), linestyle="--",
                    label=method_label(method),
                )  # fmt: skip
                continue
            points = points.sort_values("params")
            panel.errorbar(
                points["params"], points["f1"], yerr=points["f1_sd"].fillna(0), marker="o",
                color=method_color(method), label=method_label(method), capsize=2,
            )  # fmt: skip
        panel.set_xscale("log")
        panel.set_title(arch)
        panel.set_xlabel("real parameters")
        panel.set_ylabel("test micro-F1 (mean over apps and seeds)")
    handles, labels = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), frameon=False)
    figure.subplots_adjust(bottom=0.3)
    _save(figure, path)
