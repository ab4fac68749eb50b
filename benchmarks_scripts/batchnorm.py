"""What recomputing BatchNorm statistics before each validation changes (bn_stats_samples).

Usage: python benchmarks_scripts/batchnorm.py --before DIR --after DIR [--width 0.01]
       [--markdown docs/benchmarks/batchnorm.md]
Reads two finished runs of the same config and seeds, one with the running averages
(`train.bn_stats_samples: 0`, or a commit before the key) and one with the recomputed
statistics: their main tables (results/tables/main.csv) and the training histories in their
checkpoints. It prints, per method, how much the validation F1 moves from one epoch to the next
(the mean over models of the mean |change| over their trained epochs) and how often the epoch
kept is the first; then the main table's mean per method, the targets' differences, and the
KD comparisons' seed sd and 95% interval width for the first n seeds. Nothing is trained here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeds import KD_COMPARISONS, interval_widths, run_description  # noqa: E402

from packd.benchpage import write_page  # noqa: E402
from packd.checkpoint import load_checkpoint  # noqa: E402
from packd.tables.main import main_summary  # noqa: E402

# Checkpoints with one training history each: (label, glob under results/)
TRAINED = (
    ("teacher", "teachers/seed*/*/*/all.pt"),
    ("packd", "students/seed*/*/*/packd.pt"),
    ("standard_kd", "students/seed*/*/*/standard_kd.pt"),
    ("no_kd", "students/seed*/*/*/no_kd.pt"),
    ("mlp", "students/seed*/*/*/mlp.pt"),
)
TARGETS = ("teacher - no_kd",)
FEWEST_SEEDS_SHOWN = 4  # fewer give intervals far wider than any effect here
PAGE_NOTE = (
    "Two runs of the same config and seeds: `before` scores every validation epoch with "
    "BatchNorm's running averages (momentum 0.1), `after` recomputes the statistics on "
    "training samples first (`train.bn_stats_samples`). `epoch swing` is the mean over a "
    "method's models of the mean |validation F1 change| between consecutive epochs; `kept "
    "epoch 1` is the share of models whose kept epoch is the first. The means are test "
    "micro-F1, validation protocol, over cells then seeds; the widths are the seed-unit 95% t "
    "intervals of the differences (first n seeds, as docs/benchmarks/seeds.md)."
)


def epoch_swing(val_f1: list[float]) -> float:
    """Mean |validation F1 change| between consecutive trained epochs (NaN under two epochs)."""
    changes = np.abs(np.diff(np.asarray(val_f1, dtype=float)))
    return float(changes.mean()) if changes.size else float("nan")


def history_summary(results: Path) -> pd.DataFrame:
    """Per method of TRAINED: models read, mean epoch swing, share whose kept epoch is 1."""
    rows = []
    for label, pattern in TRAINED:
        swings, first_kept = [], []
        for path in sorted(results.glob(pattern)):
            header, _ = load_checkpoint(path)
            trained = [record for record in header["history"] if record["epoch"] >= 1]
            swings.append(epoch_swing([record["val_f1"] for record in trained]))
            first_kept.append(header["best_epoch"] == 1)
        if swings:
            rows.append(
                {
                    "method": label,
                    "models": len(swings),
                    "epoch_swing": float(np.nanmean(swings)),
                    "kept_epoch_1": float(np.mean(first_kept)),
                }
            )
    return pd.DataFrame(rows).set_index("method")


def method_means(main: pd.DataFrame) -> pd.Series:
    """Test F1 (validation protocol) per method: the main summary's mean over cells in each
    seed, then over seeds (its all-archs row)."""
    summary = main_summary(main).set_index(["app", "arch"]).loc[("mean", "all")]
    return summary[main["method"].unique()].astype(float).rename_axis("method")


def compare(before: Path, after: Path) -> dict[str, pd.DataFrame]:
    """The page's tables: training histories, method means, and the differences' widths/sds."""
    runs = {"before": before, "after": after}
    mains = {name: pd.read_csv(d / "results/tables/main.csv") for name, d in runs.items()}
    histories = pd.concat(
        {name: history_summary(d / "results") for name, d in runs.items()}, axis=1
    )
    means = pd.DataFrame({name: method_means(main) for name, main in mains.items()})
    means.loc["teacher - frequency"] = means.loc["teacher"] - means.loc["frequency"]
    means.loc["teacher - no_kd"] = means.loc["teacher"] - means.loc["no_kd"]
    widths = {name: interval_widths(main) for name, main in mains.items()}
    comparisons = [*KD_COMPARISONS, *TARGETS]
    tables = {"histories": histories, "means": means}
    for value in ("mean", "sd", "width"):
        table = pd.concat(
            {
                name: w[
                    w["comparison"].isin(comparisons) & (w["seeds"] >= FEWEST_SEEDS_SHOWN)
                ].pivot(index="comparison", columns="seeds", values=value)
                for name, w in widths.items()
            },
            axis=1,
        )
        tables[value] = table.reindex([c for c in comparisons if c in table.index])
    return tables


def render(tables: dict[str, pd.DataFrame], target: float) -> str:
    """The page's text from compare's tables."""
    four = "{:.4f}".format
    widths = tables["width"].map(lambda w: f"{w:.4f}{'*' if w < target else ' '}")
    histories = tables["histories"].copy()
    for column in histories.columns:
        if column[1] == "models":
            histories[column] = histories[column].map("{:.0f}".format)
        else:
            histories[column] = histories[column].map(four)
    return (
        "\n".join(
            [
                "training histories (validation F1):",
                histories.to_string(),
                "",
                "test micro-F1 per method (validation protocol, all seeds):",
                tables["means"].map(four).to_string(),
                "",
                "mean difference, first n seeds:",
                tables["mean"].map("{:+.4f}".format).to_string(),
                "",
                "seed sd of the difference:",
                tables["sd"].map(four).to_string(),
                "",
                f"95% interval width (* under {target:g}):",
                widths.to_string(),
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="run with running averages")
    parser.add_argument("--after", type=Path, required=True, help="run with recomputed ones")
    parser.add_argument("--width", type=float, default=0.01, help="the interval width aimed at")
    parser.add_argument("--markdown", type=Path, help="write the benchmark page here")
    args = parser.parse_args()
    for workdir in (args.before, args.after):
        if not (workdir / "results/tables/main.csv").exists():
            raise SystemExit(f"{workdir}: no results/tables/main.csv; run the workflow first")
    text = render(compare(args.before, args.after), args.width)
    print(text, end="")
    if args.markdown:
        runs = " ".join(
            f"{name}: {run_description(d, pd.read_csv(main_csv), d / 'config.yaml')}"
            for name, d in (("Before", args.before), ("After", args.after))
            for main_csv in [d / "results/tables/main.csv"]
        )
        write_page(
            args.markdown, "BatchNorm statistics before validation", f"{PAGE_NOTE} {runs}", text
        )


if __name__ == "__main__":
    main()
