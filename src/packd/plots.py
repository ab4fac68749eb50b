"""The workflow's figures (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import matplotlib.transforms as transforms  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from packd.atomic import atomic_path  # noqa: E402
from packd.methods import method_color, method_label, method_rank  # noqa: E402
from packd.plan import CLASSIC_PREFETCHERS  # noqa: E402


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
    """Per (arch, app, method), validation protocol: the paired difference F1(method) -
    F1(baseline) in each seed (the seed is the unit), then over the `count` (n) seeds its
    `mean`, sd (`std`), the 95% t `half_width` (n - 1 degrees of freedom) and the interval
    `ci95_low`, `ci95_high` of the mean difference. NaN intervals with one seed; an sd of 0
    (the same difference in every seed) gives a zero-width interval."""
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
    summary["ci95_low"] = summary["mean"] - summary["half_width"]
    summary["ci95_high"] = summary["mean"] + summary["half_width"]
    return summary


def _limits(values: Sequence[float] | np.ndarray, margin: float = 0.08) -> tuple[float, float]:
    """Axis limits holding every finite value (and 0), with a margin of the span each side."""
    values = np.asarray(values, dtype=float)
    values = np.append(values[np.isfinite(values)], 0.0)
    low, high = float(values.min()), float(values.max())
    pad = margin * (high - low) if high > low else max(1e-3, 0.1 * abs(high))
    return low - pad, high + pad


def _seed_count(counts: pd.Series) -> str:
    """'2 seeds' or '1-3 seeds' from per-point seed counts."""
    low, high = int(counts.min()), int(counts.max())
    return f"{low} seed{'s' if high > 1 else ''}" if low == high else f"{low}-{high} seeds"


def plot_main_f1(table: pd.DataFrame, path: Path, baseline: str = "no_kd") -> plt.Figure:
    """Each method's validation-protocol test F1 minus no KD's, per app (one panel per arch):
    bars are the mean paired difference over seeds, whiskers its 95% t interval (the seed is
    the unit; none with one seed). Each panel's y-limits come from its intervals, so every
    whisker is whole and a difference of 0.002 is not lost on a 0-1 axis; the title gives the
    number of seeds and the interval. Returns the (saved, closed) figure."""
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
        panel.set_ylim(*_limits(rows[["mean", "ci95_low", "ci95_high"]].to_numpy().ravel()))
        panel.set_xticks(np.arange(len(apps)), apps)
        panel.set_title(arch)
        panel.set_ylabel(f"test micro-F1 minus {method_label(baseline)}")
    if len(summary):
        seeds = _seed_count(summary["count"])
        interval = (
            "whiskers: 95% t interval of the mean paired difference (seed as unit, n - 1 df)"
            if summary["count"].max() > 1
            else "one seed: no interval"
        )
        figure.suptitle(f"Mean over {seeds}; {interval}", fontsize=10)
    handles, labels = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    figure.subplots_adjust(bottom=0.3)
    _save(figure, path)
    return figure


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


def plot_sweep(table: pd.DataFrame, sweep: str, path: Path) -> plt.Figure:
    """PaCKD student F1 against the swept setting, one line per arch: the mean over apps and
    seeds, error bars the sd over seeds of each seed's mean over apps (none with one seed).
    Returns the (saved, closed) figure."""
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
    means = table.groupby(["arch", key], sort=False)["f1"].mean().rename("f1")
    per_seed = table.groupby(["arch", key, "seed"], sort=False)["f1"].mean()
    spread = per_seed.groupby(level=["arch", key], sort=False).agg(["std", "count"])
    points = pd.concat([means, spread], axis=1).reset_index()
    for arch, rows in points.groupby("arch"):
        axes.errorbar(
            rows[key].astype(str), rows["f1"], yerr=rows["std"].fillna(0), marker="o",
            capsize=3, label=arch,
        )  # fmt: skip
    axes.set_xlabel({"k": "clusters k", "features": "feature set", "kd": "alpha and T"}[sweep])
    axes.set_ylabel("PaCKD student test micro-F1 (mean over apps)")
    if len(points):
        spread_text = (
            "error bars: sd over seeds" if points["count"].max() > 1 else "one seed: no spread"
        )
        axes.set_title(f"{_seed_count(points['count'])}; {spread_text}", fontsize=10)
    axes.legend()
    if sweep == "kd":
        axes.tick_params(axis="x", rotation=45)
    _save(figure, path)
    return figure


CLASSIC_MARKERS = dict(zip(CLASSIC_PREFETCHERS, ("s", "^", "D", "<", ">"), strict=False))
ARCH_MARKERS = ("o", "P", "X", "v", "*")


def plot_prefetch(table: pd.DataFrame, path: Path) -> plt.Figure:
    """Coverage against accuracy (useful / filled), a panel per app: a point per model (colour:
    its method's, packd.methods.method_color; marker: arch) and per classic prefetcher (black,
    open, its own marker). The legend names each colour and each marker once: colours (patches)
    are methods, filled black markers archs, open black markers classic prefetchers. Returns the
    (saved, closed) figure."""
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    apps = sorted(table["app"].unique()) or ["(none)"]
    models = table[table["kind"] == "model"]
    archs = sorted(models["arch"].unique())
    arch_marker = {arch: ARCH_MARKERS[i % len(ARCH_MARKERS)] for i, arch in enumerate(archs)}
    figure, panels = plt.subplots(
        1, len(apps), figsize=(4.5 * len(apps), 4.4), squeeze=False, sharey=True
    )
    for panel, app in zip(panels[0], apps, strict=True):
        rows = table[table["app"] == app]
        for _, row in rows[rows["kind"] == "model"].iterrows():
            panel.scatter(
                row["coverage"],
                row["accuracy"],
                color=method_color(row["name"]),
                marker=arch_marker[row["arch"]],
                s=40,
                alpha=0.85,
                edgecolors="none",
            )
        # Classic rows repeat once per arch in the table: one point each.
        classic = rows[rows["kind"] == "classic"].drop_duplicates("name")
        for _, row in classic.iterrows():
            panel.scatter(
                row["coverage"],
                row["accuracy"],
                color="black",
                marker=CLASSIC_MARKERS.get(row["name"], "x"),
                s=55,
                facecolors="none",
                linewidths=1.2,
            )
        panel.set_title(app)
        panel.set_xlabel("coverage (useful / LLC misses without prefetching)")
        panel.set_xlim(0, max(0.05, 1.1 * float(rows["coverage"].max() or 0)))
        panel.set_ylim(0, 1.02)
        panel.grid(alpha=0.3)
    panels[0][0].set_ylabel("accuracy (useful / filled prefetches)")
    names = sorted(models["name"].unique(), key=method_rank)
    handles: list[Artist] = [
        Patch(color=method_color(name), label=method_label(name)) for name in names
    ]
    handles += [
        Line2D([], [], color="black", marker=arch_marker[arch], linestyle="", label=arch)
        for arch in archs
    ]
    classic_labels = {
        "next_line": "next-line",
        "ip_stride": "IP-stride",
        "best_offset": "best-offset",
    }
    present = set(table.loc[table["kind"] == "classic", "name"])
    handles += [
        Line2D(
            [],
            [],
            color="black",
            marker=CLASSIC_MARKERS.get(name, "x"),
            markerfacecolor="none",
            linestyle="",
            label=classic_labels.get(name, name),
        )
        for name in [*CLASSIC_PREFETCHERS, *sorted(present - set(CLASSIC_PREFETCHERS))]
        if name in present
    ]
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    rows_of_legend = -(-len(handles) // 6) if handles else 0
    figure.subplots_adjust(bottom=0.16 + 0.06 * rows_of_legend)
    _save(figure, path)
    return figure


def _compact_count(value: float, _position: int | None = None) -> str:
    """1000 -> 1k, 2500000 -> 2.5M: short parameter counts for a log axis."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _log_count_axis(axis: matplotlib.axis.Axis, values: np.ndarray) -> None:
    """A log axis holding values with a margin and at least two decades (the labelled major
    ticks, at most 6, in a short plain form); minor ticks unlabelled (their labels run into
    each other)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values):
        low, high = np.log10(values.min() / 1.6), np.log10(values.max() * 1.6)
        while np.floor(high) - np.ceil(low) < 1:  # fewer than two decades inside: widen
            up, down = np.ceil(high) - high, low - np.floor(low)  # to the next decade out
            if up == 0 and down == 0:
                high += 1
            elif up == 0 or (down > 0 and down < up):
                low = np.floor(low)
            else:
                high = np.ceil(high)
        if isinstance(axis, matplotlib.axis.XAxis):
            axis.axes.set_xlim(10**low, 10**high)
        else:
            axis.axes.set_ylim(10**low, 10**high)
    axis.set_major_locator(ticker.LogLocator(base=10, numticks=6))
    axis.set_major_formatter(ticker.FuncFormatter(_compact_count))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=range(2, 10), numticks=12))
    axis.set_minor_formatter(ticker.NullFormatter())


def plot_frontier(table: pd.DataFrame, path: Path) -> plt.Figure:
    """Test F1 against real parameter count (log scale), one panel per arch, one line per
    method over its budgets at each point's real size, error bars the sd over seeds; the
    teacher at its own size and as a dashed horizontal line labelled as the ceiling. Returns
    the (saved, closed) figure."""
    archs = sorted(table["arch"].unique())
    figure, panels = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4.2), squeeze=False)
    for panel, arch in zip(panels[0], archs, strict=True):
        rows = table[table["arch"] == arch]
        for method, points in rows.groupby("method", sort=False):
            points = points.sort_values("params")
            color = method_color(method)
            if method == "teacher":
                ceiling = float(points["f1"].iloc[0])
                panel.axhline(
                    ceiling, color=color, linestyle="--", linewidth=1,
                    label=f"{method_label(method)} F1 (ceiling)",
                )  # fmt: skip
                along = transforms.blended_transform_factory(panel.transAxes, panel.transData)
                panel.text(
                    0.01, ceiling, f"ceiling: {method_label(method)} {ceiling:.3f}",
                    transform=along, color=color, fontsize=8, ha="left", va="bottom",
                )  # fmt: skip
                panel.errorbar(
                    points["params"], points["f1"], yerr=points["f1_sd"].fillna(0), marker="*",
                    markersize=10, linestyle="none", color=color, capsize=2,
                )  # fmt: skip
                continue
            panel.errorbar(
                points["params"], points["f1"], yerr=points["f1_sd"].fillna(0), marker="o",
                color=color, label=method_label(method), capsize=2,
            )  # fmt: skip
        panel.set_xscale("log")
        _log_count_axis(panel.xaxis, rows["params"].to_numpy())
        panel.set_title(arch)
        panel.set_xlabel("real parameters")
        panel.set_ylabel("test micro-F1 (mean over apps and seeds)")
    handles, labels = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), frameon=False)
    figure.subplots_adjust(bottom=0.3, wspace=0.35)  # room for edge tick labels and y labels
    _save(figure, path)
    return figure
