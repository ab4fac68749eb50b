"""How large a validation split? The default run's KD-comparison students retrained with another
validation size, and the seed sd of their differences at each.

Usage: python benchmarks_scripts/validation_size.py [--results results] [--configfile config.yaml]
       [--seeds 1 2 3 4 5] [--val-samples 4000] [--workers 2]
       [--markdown docs/benchmarks/validation_size.md]
Reads a finished default run and, on each seed given, retrains its PaCKD, standard-KD and no-KD
students (the run's teachers, clusters and learning-rate choices; the same training and test
samples) with the validation split rebuilt from the trace at --val-samples samples
(dataset.max_samples.val). A student keeps the epoch, and is scored at the threshold, that its
own validation split chose: the figure is the test micro-F1 of the kept epoch at that threshold
(the training log's, on the run's test subset). For the run's students and the retrained ones it
prints each method's mean and, per KD comparison, the seed-unit mean difference (over cells in
each seed, then over seeds), its seed sd and the 95% t interval's width; then, as a diagnosis of
where the spread comes from, the seed sd with one validation choice replaced (the last epoch
instead of the kept one, the test split's best threshold instead of validation's).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from packd.benchpage import write_page
from packd.config import validate_config

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
METHODS = ("packd", "standard_kd", "no_kd")
COMPARISONS = (("packd", "no_kd"), ("packd", "standard_kd"), ("standard_kd", "no_kd"))


# Where the spread comes from: the headline rule, and the same model with one validation choice
# replaced (the epoch by the last one, the threshold by the test split's best; diagnostics only).
RULES = {
    "kept epoch, val threshold": ("kept", "test_f1_val_threshold"),
    "kept epoch, test-best threshold": ("kept", "test_f1_best_threshold"),
    "last epoch, val threshold": ("last", "test_f1_val_threshold"),
    "last epoch, test-best threshold": ("last", "test_f1_best_threshold"),
}
HEADLINE = "kept epoch, val threshold"


def kept_test_f1(header: dict, rule: str = HEADLINE) -> float:
    """A checkpoint's test micro-F1 under a rule of RULES; the headline: the kept epoch's, at
    the threshold its validation chose."""
    epoch, field = RULES[rule]
    history = header["history"]
    record = history[int(header["best_epoch"]) - 1] if epoch == "kept" else history[-1]
    return float(record[field])


def rule_scores(header: dict) -> dict[str, float]:
    """The checkpoint's figure under every rule of RULES."""
    return {rule: kept_test_f1(header, rule) for rule in RULES}


def comparison_summary(scores: pd.DataFrame, value: str = "f1") -> pd.DataFrame:
    """Per KD comparison (scores: seed, app, method and the value column): the mean over seeds
    of each seed's mean difference over cells, its seed sd and the 95% t interval's width."""
    table = scores.pivot_table(index=["seed", "app"], columns="method", values=value)
    rows = []
    for first, second in COMPARISONS:
        per_seed = (table[first] - table[second]).groupby(level="seed").mean()
        n = len(per_seed)
        sd = float(per_seed.std(ddof=1)) if n > 1 else float("nan")
        width = 2 * stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if n > 1 else float("nan")
        rows.append(
            {
                "comparison": f"{first} - {second}",
                "mean": float(per_seed.mean()),
                "sd": sd,
                "width": width,
            }
        )
    return pd.DataFrame(rows).set_index("comparison")


def rebuilt_splits(results: Path, config: dict, app: str, val_samples: int, scratch: Path):
    """The app's splits with the validation split rebuilt at val_samples; the run's training
    and test samples, checked to be the same."""
    from packd.stages.data import build_dataset

    dataset = copy.deepcopy(config["dataset"])
    dataset["max_samples"] = {**dataset["max_samples"], "val": val_samples}
    folder = scratch / app
    folder.mkdir(parents=True, exist_ok=True)
    paths = {split: folder / f"{split}.npz" for split in ("train", "val", "test")}
    build_dataset(
        results / f"traces/{app}.parquet",
        dataset,
        paths,
        folder / "sizes.json",
        seed=config["seed"],
    )
    for split in ("train", "test"):
        with (
            np.load(paths[split]) as rebuilt,
            np.load(results / f"datasets/{app}/{split}.npz") as run,
        ):
            if not all(np.array_equal(rebuilt[key], run[key]) for key in run.files):
                raise SystemExit(f"{app}: the rebuilt {split} split is not the run's")
    return {"train": results / f"datasets/{app}/train.npz", "val": paths["val"],
            "test": results / f"datasets/{app}/test.npz"}  # fmt: skip


def run_job(job: tuple) -> dict:
    """One retrained student of one cell."""
    import torch

    from packd.cell import Cell
    from packd.methods import method_settings
    from packd.stages.training import train_student

    torch.set_num_threads(1)
    method, seed, app, arch, results, config, splits, scratch = job
    results = Path(results)
    settings = method_settings(method, config)
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    teachers, clusters = [], None
    if settings["soft_targets"] == "cluster_teachers":
        clusters = results / f"clusters/seed{seed}/{app}/{features}-k{k}.parquet"
        teachers = sorted(
            (results / f"teachers/seed{seed}/{app}/{arch}/{features}-k{k}").glob("c*.pt")
        )
    elif settings["soft_targets"] == "whole_app_teacher":
        teachers = [results / f"teachers/seed{seed}/{app}/{arch}/all.pt"]
    chosen = results / f"students/seed{config['seeds'][0]}/{app}/{arch}/{method}.selection.json"
    header = train_student(
        Cell(seed, app, arch), splits, config["models"][arch], settings, config["train"],
        Path(scratch) / f"seed{seed}-{app}-{arch}-{method}.pt", method,
        teacher_paths=teachers, clusters_path=clusters,
        chosen_selection_path=chosen,
    )  # fmt: skip
    return {"seed": seed, "app": app, "arch": arch, "method": method, **rule_scores(header)}


def run_scores(results: Path, config: dict, seeds: list[int]) -> pd.DataFrame:
    """The run's own students' figures, read from their checkpoints."""
    from packd.checkpoint import load_checkpoint

    rows = []
    for seed in seeds:
        for app in config["apps"]:
            for arch in config["archs"]:
                for method in METHODS:
                    path = results / f"students/seed{seed}/{app}/{arch}/{method}.pt"
                    header, _ = load_checkpoint(path)
                    rows.append({"seed": seed, "app": app, "arch": arch, "method": method,
                                 **rule_scores(header)})  # fmt: skip
    return pd.DataFrame(rows)


def render(by_size: dict[str, pd.DataFrame]) -> str:
    """Per validation size: the headline's method means and comparison summary, then the seed
    sd of each comparison under every rule of RULES."""
    lines = []
    for label, scores in by_size.items():
        means = scores.groupby("method")[HEADLINE].mean().reindex(list(METHODS))
        summary = comparison_summary(scores, HEADLINE)
        by_rule = pd.DataFrame(
            {rule: comparison_summary(scores, rule)["sd"] for rule in RULES}
        ).rename_axis("seed sd")
        lines += [
            f"{label}:",
            "  mean test F1 (headline): " + ", ".join(f"{m} {v:.4f}" for m, v in means.items()),
            summary.to_string(float_format=lambda v: f"{v:+.4f}" if v < 0 else f"{v:.4f}"),
            "",
            by_rule.to_string(float_format=lambda v: f"{v:.4f}"),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--val-samples", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    validate_config(config, SCHEMA)  # the schema's defaults filled in, as the rules see it
    results = args.results
    run_val = config["dataset"]["max_samples"]["val"]
    with tempfile.TemporaryDirectory(prefix="packd-validation-size-") as scratch:
        splits = {
            app: rebuilt_splits(results, config, app, args.val_samples, Path(scratch))
            for app in config["apps"]
        }
        jobs = [
            (method, seed, app, arch, str(results), config, splits[app], scratch)
            for seed in args.seeds
            for app in config["apps"]
            for arch in config["archs"]
            for method in METHODS
        ]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            retrained = pd.DataFrame(list(pool.map(run_job, jobs)))
    printed = render(
        {
            f"the run (max_samples.val {run_val})": run_scores(results, config, args.seeds),
            f"retrained (max_samples.val {args.val_samples})": retrained,
        }
    )
    printed = (
        f"seeds {', '.join(map(str, args.seeds))}; test micro-F1, validation protocol\n\n" + printed
    )
    print(printed, end="")
    if args.markdown:
        note = (
            "The default run's PaCKD, standard-KD and no-KD students against the same students "
            "retrained with the validation split at another size (the run's teachers, clusters, "
            "learning-rate choices, training and test samples). Each student keeps the epoch its "
            "own validation split chose and is scored at that split's threshold; the figure is "
            "the test micro-F1 of that epoch on the run's test subset. Per KD comparison: the "
            "seed-unit mean difference (mean over cells in each seed, then over seeds), its seed "
            "sd and the 95% t interval's width (n - 1 degrees of freedom). The validation split "
            "holds every sample of the training region's validation blocks up to the cap: an app "
            "with fewer keeps them all. The second table of each size is a diagnosis, not a "
            "protocol: the seed sd of each comparison with the same models scored at the last "
            "epoch instead of the kept one, or at the test split's best threshold instead of "
            "validation's (both read from the training histories, which score every epoch on "
            "test); the headline never uses them."
        )
        write_page(args.markdown, "Validation size: steadier choices", note, printed)


if __name__ == "__main__":
    main()
