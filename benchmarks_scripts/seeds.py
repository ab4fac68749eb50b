"""How many seeds resolve the main table's differences, and what each seed costs.

Usage: python benchmarks_scripts/seeds.py [--workdir .] [--cores 2] [--width 0.01]
       [--sources] [--all-benchmarks] [--markdown docs/benchmarks/seeds.md]
Reads a finished run's main table (results/tables/main.csv) and job benchmarks (benchmarks/:
only the default target's jobs, as a forced dry run in the run folder lists them, unless
--all-benchmarks),
for example the default run extended with `--config seeds=[1,2,3,4,5,6,7,8]`. For the first n
seeds, n = 2 .. all, it prints the 95% t interval of every comparison of the significance table
(all archs: the mean over the run's cells in each seed, then over seeds; validation protocol),
its width and the seed sd. Then the jobs' own time per seed: the first seed also trains the
learning-rate grids; the others replicate at its choices. With --sources, where the seed sd
of a KD comparison comes from: each seed's selected models (teacher and single-checkpoint
students) are scored again on the app's whole validation and test splits (rebuilt from the
trace, every sample kept): if the sd fell there, a larger test set or a steadier threshold would
narrow the intervals for free; if not, the spread is the trained models' own, and only seeds
narrow it. Nothing is trained here.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from packd.benchpage import write_page
from packd.config import validate_config
from packd.tables.significance import significance_table

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"

# The comparisons between the KD methods, then the teacher's (the ceiling) and the rest
KD_COMPARISONS = ("packd - no_kd", "packd - standard_kd", "standard_kd - no_kd")
SEED_FOLDER = re.compile(r"/seed(\d+)/")
BENCHMARK_LINE = re.compile(r"^\s*benchmark: (\S+)\s*$", re.MULTILINE)
PAGE_NOTE = (
    "The default run's test micro-F1 differences (validation protocol, mean over its cells in "
    "each seed) with the seed as the unit of replication: for the first n seeds, the 95% t "
    "interval's width (n - 1 degrees of freedom; unadjusted: Holm's correction moves the "
    "p-values, not these intervals) and, below, the seed sd. A width under the target is "
    "marked `*`. Seeds are nested: the first n seeds are the same models in every column. The "
    "job times are Snakemake's benchmarks of the same run; `shared` is every job without a "
    "seed (tracing, datasets, tables). Only the default target's jobs count (those a forced dry "
    "run at the run's seeds lists), not those of `frontier` or `sweeps` run in the same folder. "
    "`job time / cores` is a lower bound on a run's wall "
    "time, not a measurement: docs/results.md has the default run's measured time."
)


def interval_widths(main: pd.DataFrame, max_seeds: int | None = None) -> pd.DataFrame:
    """Per comparison and first-n seeds: mean, seed sd, 95% interval and its width."""
    seeds = sorted(main["seed"].unique())[:max_seeds]
    rows = []
    for n in range(2, len(seeds) + 1):
        subset = main[main["seed"].isin(seeds[:n])]
        table = significance_table(subset)
        for row in table[table["arch"] == "all"].itertuples():
            rows.append(
                {
                    "comparison": row.comparison,
                    "seeds": n,
                    "mean": row.mean_f1_difference,
                    "sd": row.sd_over_seeds,
                    "width": row.ci95_high - row.ci95_low,
                    "p_holm": row.p_holm,
                }
            )
    return pd.DataFrame(rows)


def seed_job_seconds(benchmarks: Path, only: set[str] | None = None) -> pd.Series:
    """The jobs' own seconds per seed (0: the jobs without a seed), from Snakemake benchmarks;
    with only, just the benchmarks at those paths (relative to the run folder, as Snakemake
    names them: benchmarks/...)."""
    seconds: dict[int, float] = {}
    for path in sorted(benchmarks.rglob("*.tsv")):
        if (
            only is not None
            and f"{benchmarks.name}/{path.relative_to(benchmarks).as_posix()}" not in only
        ):
            continue
        match = SEED_FOLDER.search(path.as_posix())
        seed = int(match.group(1)) if match else 0
        seconds[seed] = seconds.get(seed, 0.0) + float(pd.read_csv(path, sep="\t")["s"].iloc[0])
    return pd.Series(seconds, name="job_seconds").sort_index()


def dry_run_benchmarks(dry_run_text: str) -> set[str]:
    """The benchmark paths of the jobs a Snakemake dry run lists."""
    return set(BENCHMARK_LINE.findall(dry_run_text))


def default_target_benchmarks(workdir: Path, configfile: Path, seeds: list[int]) -> set[str]:
    """The benchmark paths of the default target's jobs at these seeds: what a forced dry run
    in the run folder would run. A folder also used for `frontier` or `sweeps` holds their
    benchmarks too, and they are no part of a seed's cost in the default run."""
    command = [
        sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--cores", "1",
        "--configfile", str(configfile.resolve()),
        "--config", f"seeds=[{','.join(map(str, seeds))}]",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dry run of the default target failed:\n{result.stderr[-2000:]}")
    benchmarks = dry_run_benchmarks(result.stdout)
    if not benchmarks:
        raise SystemExit("the dry run of the default target lists no benchmark")
    return benchmarks


def whole_splits(workdir: Path, config: dict, app: str, scratch: Path) -> dict[str, Path]:
    """The app's validation and test splits with every sample kept (the run's split points)."""
    from packd.stages.data import build_dataset

    dataset = copy.deepcopy(config["dataset"])
    dataset["max_samples"] = {**dataset["max_samples"], "val": None, "test": None}
    paths = {split: scratch / f"{app}_{split}.npz" for split in ("train", "val", "test")}
    build_dataset(
        workdir / f"results/traces/{app}.parquet",
        dataset,
        paths,
        scratch / f"{app}_sizes.json",
        seed=config["seed"],
    )
    return paths


def rescored_f1(workdir: Path, main: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Test F1 of each seed's teacher and KD-comparison students, three ways: the run's
    validation threshold on the run's test subset (the main table's figure), on the whole test
    split, and the whole validation split's threshold on the whole test split."""
    import torch

    from packd.dataset import load_split
    from packd.methods import checkpoint_paths
    from packd.metrics import best_threshold, micro_f1
    from packd.networks import load_models
    from packd.train import predict_logits

    methods = ["teacher", "packd", "standard_kd", "no_kd"]
    cells = main[(main["protocol"] == "validation") & main["method"].isin(methods)]
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for app in sorted(cells["app"].unique()):
            whole = {
                name: load_split(path)
                for name, path in whole_splits(workdir, config, app, Path(scratch)).items()
                if name != "train"
            }
            run = {
                name: load_split(workdir / f"results/datasets/{app}/{name}.npz")
                for name in ("val", "test")
            }
            for row in cells[cells["app"] == app].itertuples():
                (path,) = checkpoint_paths(row.method, row.seed, app, row.arch, features, k)
                models, _ = load_models([workdir / path])
                model = next(iter(models.values()))

                def scores(split: dict, model=model) -> np.ndarray:
                    logits = predict_logits(model, split["inputs"], 1024, torch.device("cpu"))
                    return 1.0 / (1.0 + np.exp(-logits))

                threshold, _ = best_threshold(run["val"]["labels"], scores(run["val"]))
                whole_threshold, _ = best_threshold(whole["val"]["labels"], scores(whole["val"]))
                whole_test = scores(whole["test"])
                rows.append(
                    {
                        "seed": row.seed,
                        "app": app,
                        "arch": row.arch,
                        "method": row.method,
                        "run": micro_f1(run["test"]["labels"], scores(run["test"]), threshold),
                        "whole test": micro_f1(whole["test"]["labels"], whole_test, threshold),
                        "whole val and test": micro_f1(
                            whole["test"]["labels"], whole_test, whole_threshold
                        ),
                        "table_f1": row.f1,
                    }
                )
    return pd.DataFrame(rows)


def source_sds(rescored: pd.DataFrame) -> pd.DataFrame:
    """Seed sd of each KD comparison (per-seed mean over cells) under each way of scoring."""
    ways = ["run", "whole test", "whole val and test"]
    result = {}
    for way in ways:
        wide = rescored.pivot_table(index=["seed", "app", "arch"], columns="method", values=way)
        result[way] = {
            comparison: float(
                (wide[comparison.split(" - ")[0]] - wide[comparison.split(" - ")[1]])
                .groupby(level="seed")
                .mean()
                .std(ddof=1)
            )
            for comparison in (*KD_COMPARISONS, "teacher - no_kd")
        }
    return pd.DataFrame(result)


def render(
    widths: pd.DataFrame,
    costs: pd.Series,
    cores: int,
    target: float,
    sources: pd.DataFrame | None = None,
) -> str:
    """The page's text: widths and sds by first-n seeds, the time per seed and, with sources,
    the seed sds with the models scored on the whole validation and test splits."""
    order = [c for c in KD_COMPARISONS if c in set(widths["comparison"])]
    order += [c for c in dict.fromkeys(widths["comparison"]) if c not in order]
    width_table = widths.pivot(index="comparison", columns="seeds", values="width").loc[order]
    marked = width_table.map(lambda w: f"{w:.4f}{'*' if w < target else ' '}")
    sd_table = widths.pivot(index="comparison", columns="seeds", values="sd").loc[order]
    last = widths[widths["seeds"] == widths["seeds"].max()].set_index("comparison").loc[order]
    lines = [
        f"95% interval width by seeds used (first n; * under {target:g}):",
        marked.to_string(),
        "",
        "seed sd of the difference:",
        sd_table.map(lambda v: f"{v:.4f}").to_string(),
        "",
        f"with all {int(widths['seeds'].max())} seeds: mean and Holm-adjusted p "
        "(family: this table's tests)",
        pd.DataFrame(
            {
                "mean": last["mean"].map("{:+.4f}".format),
                "p_holm": last["p_holm"].map("{:.4f}".format),
            }
        ).to_string(),
        "",
        "the jobs' own time per seed (min):",
    ]
    per_seed = costs[costs.index > 0]
    for seed, seconds in costs.items():
        label = "shared" if seed == 0 else f"seed {seed}"
        lines.append(f"  {label:8s} {seconds / 60:6.1f}")
    if len(per_seed) > 1:
        later = per_seed.iloc[1:].mean()
        lines += ["", f"job time / {cores} cores for n seeds (min):"]
        for n in range(1, len(per_seed) + 1):
            total = costs.get(0, 0.0) + per_seed.iloc[0] + (n - 1) * later
            lines.append(f"  {n} seeds  {total / 60 / cores:6.1f}")
    if sources is not None:
        lines += [
            "",
            "seed sd of the difference, the same models scored on (all seeds):",
            "  run: the run's test subset at its validation threshold (the table's figure)",
            "  whole test: every test sample, the same threshold",
            "  whole val and test: the threshold chosen on every validation sample",
            sources.map(lambda v: f"{v:.4f}").to_string(),
        ]
    return "\n".join(lines) + "\n"


def run_description(workdir: Path, main: pd.DataFrame, configfile: Path) -> str:
    """Which run the page read: its commit, its seeds and how they go beyond the config's."""
    commit = subprocess.run(
        ["git", "-C", str(workdir), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    seeds = sorted(int(seed) for seed in main["seed"].unique())
    text = f"The run: the workflow at commit {commit or 'unknown'}, seeds {seeds}"
    config_seeds = (
        yaml.safe_load(configfile.read_text()).get("seeds") if configfile.exists() else None
    )
    if config_seeds and sorted(config_seeds) != seeds:
        text += (
            f" ({configfile.name}'s {sorted(config_seeds)}, then "
            f"`--config seeds=[{','.join(map(str, seeds))}]` in the same folder)"
        )
    return text + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("."))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--width", type=float, default=0.01, help="the interval width aimed at")
    parser.add_argument(
        "--sources", action="store_true", help="rescore the models on the whole val/test splits"
    )
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--markdown", type=Path, help="write the benchmark page here")
    parser.add_argument(
        "--all-benchmarks",
        action="store_true",
        help="count every benchmark under the run folder, not only the default target's jobs",
    )
    args = parser.parse_args()
    main_csv = args.workdir / "results/tables/main.csv"
    if not main_csv.exists():
        raise SystemExit(f"{main_csv}: no main table; run the workflow first")
    main_rows = pd.read_csv(main_csv)
    widths = interval_widths(main_rows)
    if widths.empty:
        raise SystemExit(f"{main_csv}: fewer than two seeds, no interval to show")
    sources = None
    if args.sources:
        config = yaml.safe_load(args.configfile.read_text())
        validate_config(config, SCHEMA)  # the schema's defaults, as the rules see them
        rescored = rescored_f1(args.workdir, main_rows, config)
        drift = (rescored["run"] - rescored["table_f1"]).abs().max()
        if drift > 1e-6:
            raise SystemExit(f"rescoring does not reproduce the main table (off by {drift:.2g})")
        sources = source_sds(rescored)
    only = None
    if not args.all_benchmarks:
        seeds = sorted(int(seed) for seed in main_rows["seed"].unique())
        only = default_target_benchmarks(args.workdir, args.configfile, seeds)
    costs = seed_job_seconds(args.workdir / "benchmarks", only)
    text = render(widths, costs, args.cores, args.width, sources)
    print(text, end="")
    if args.markdown:
        note = f"{PAGE_NOTE} {run_description(args.workdir, main_rows, args.configfile)}"
        write_page(args.markdown, "Seeds: interval widths and cost", note, text)


if __name__ == "__main__":
    main()
