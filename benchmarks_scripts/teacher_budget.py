"""Is there something to distil? The teacher recipe of the default run against the earlier
defaults', and the cluster teachers warm-started from the whole-app teacher against trained from
scratch.

Usage: python benchmarks_scripts/teacher_budget.py [--results results] [--configfile config.yaml]
       [--seeds 1 2] [--workers 2] [--markdown docs/benchmarks/teacher_budget.md]
Reads a finished default run (its datasets, clusters, teachers and no-KD students) and trains
what the run did not, on each seed given: the whole-app teacher and the no-KD student at each
earlier default recipe (EARLIER_RECIPES: fewer training samples, a subsample of the run's, and
other epochs), and cluster teachers from scratch (train.cluster_teachers init: scratch, the
authors' way, for as many optimiser steps as the whole-app teacher). Every figure is a best
validation micro-F1 (the selection criterion; nothing is read on test).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from packd.benchpage import write_page
from packd.config import validate_config

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"

# The earlier defaults of config.yaml: training samples kept per app and the phases' epochs.
EARLIER_RECIPES = {
    "first": {
        "samples": 8000,
        "phases": {
            "teacher": {"epochs": 5, "patience": 3, "min_epochs": 3, "schedule": "constant"},
            "student": {"epochs": 6, "patience": 3, "min_epochs": 3, "schedule": "constant"},
        },
    },
    "second": {
        "samples": 40000,
        "phases": {
            "teacher": {"epochs": 10, "patience": 5, "min_epochs": 6, "schedule": "cosine"},
            "student": {"epochs": 10, "patience": 5, "min_epochs": 6, "schedule": "cosine"},
        },
    },
}


def recipe_text(samples: int | str, phases: dict) -> str:
    teacher, student = phases["teacher"], phases["student"]
    return (
        f"{samples} training samples; teacher {teacher['epochs']} and student "
        f"{student['epochs']} epochs, {teacher['schedule']} rate, patience {teacher['patience']}"
    )


def page_note(config: dict, sizes: dict[str, int]) -> str:
    """What each column holds, the run's recipe read from its config."""
    earlier = "; ".join(
        f"`{name}`: {recipe_text(recipe['samples'], recipe['phases'])}"
        for name, recipe in EARLIER_RECIPES.items()
    )
    kept = ", ".join(f"{app} {n}" for app, n in sizes.items())
    run = recipe_text(f"up to {config['dataset']['max_samples']['train']}", config["train"])
    return (
        "Best validation micro-F1 per (seed, app, arch) cell. `frequency`: each bit's training "
        f"frequency as its score. The earlier default recipes ({earlier}) train the whole-app "
        "teacher and the no-KD student on a seeded subsample of the run's training split, at "
        "the learning rate the run chose. `run`: the run's own whole-app teacher and no-KD "
        f"student ({run}; kept: {kept}). `routed`: each validation sample scored by its "
        "cluster's teacher, one threshold for all: `warm start` is the run's (the whole-app "
        "teacher fine-tuned on each cluster), `scratch` trains each cluster teacher from a "
        "fresh initialisation for as many steps as the whole-app teacher."
    )


def best_val_f1(path: Path) -> float:
    from packd.checkpoint import load_checkpoint

    header, _ = load_checkpoint(path)
    return max(record["val_f1"] for record in header["history"])


def recipe_data(datasets: Path, scratch: Path, samples: int, seed: int) -> dict[str, Path]:
    """The run's splits with the training split cut to a recipe's sample count."""
    from packd.dataset import load_split, save_split, subsample_split

    paths = {split: datasets / f"{split}.npz" for split in ("val", "test")}
    paths["train"] = scratch / f"train-{samples}.npz"
    if not paths["train"].exists():
        train = load_split(datasets / "train.npz")
        if len(train["labels"]) > samples:
            train = subsample_split(train, samples, seed, 0)
        save_split(paths["train"], train)
    return paths


def recipe_train_config(train: dict, phases: dict) -> dict:
    train = copy.deepcopy(train)
    for phase, settings in phases.items():
        train[phase].update(settings)
    return train


def run_job(job: tuple) -> dict:
    """One trained figure: an earlier recipe's teacher or no-KD student, or one cluster teacher
    from scratch."""
    import torch

    from packd.cell import Cell
    from packd.methods import method_settings
    from packd.stages.training import train_student, train_teacher

    torch.set_num_threads(1)
    kind, recipe, seed, app, arch, results, config, scratch, cluster_id = job
    cell = Cell(seed, app, arch)
    datasets = Path(results) / "datasets" / app
    first_seed = config["seeds"][0]
    selection = Path(results) / f"teachers/seed{first_seed}/{app}/{arch}/selection.json"
    folder = Path(scratch) / f"seed{seed}-{app}-{arch}"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"{kind}-{recipe}-{cluster_id}.pt"
    done = {"kind": kind, "recipe": recipe, "seed": seed, "app": app, "arch": arch}
    if kind == "scratch cluster teacher":
        train = copy.deepcopy(config["train"])
        train["cluster_teachers"] = {"init": "scratch"}
        features, k = config["cluster"]["features"], config["cluster"]["k"]
        train_teacher(
            cell, {split: datasets / f"{split}.npz" for split in ("train", "val", "test")},
            config["models"][arch]["teacher"], train, checkpoint,
            clusters_path=Path(results) / f"clusters/seed{seed}/{app}/{features}-k{k}.parquet",
            cluster_id=cluster_id, selection_path=selection,
        )  # fmt: skip
        return {**done, "path": str(checkpoint)}
    settings = EARLIER_RECIPES[recipe]
    splits = recipe_data(datasets, Path(scratch) / app, settings["samples"], config["seed"])
    train = recipe_train_config(config["train"], settings["phases"])
    if kind == "teacher":
        train_teacher(
            cell, splits, config["models"][arch]["teacher"], train, checkpoint,
            selection_path=selection,
        )  # fmt: skip
    else:
        no_kd_selection = (
            Path(results) / f"students/seed{first_seed}/{app}/{arch}/no_kd.selection.json"
        )
        train_student(
            cell, splits, config["models"][arch], method_settings("no_kd", config), train,
            checkpoint, "no_kd",
            chosen_selection_path=no_kd_selection if no_kd_selection.exists() else None,
        )  # fmt: skip
    return {**done, "val_f1": best_val_f1(checkpoint)}


def of_cell(
    done: list[dict], kind: str, seed: int, app: str, arch: str, recipe: str = ""
) -> list[dict]:
    """The finished jobs of one kind (and recipe) in one cell."""
    key = (kind, recipe, seed, app, arch)
    return [
        row
        for row in done
        if (row["kind"], row["recipe"], row["seed"], row["app"], row["arch"]) == key
    ]


def routed_val_f1(teacher_paths: list[Path], clusters_path: Path, val_path: Path) -> float:
    """Validation F1 of each sample scored by its own cluster's teacher, at the best threshold."""
    import torch

    from packd.clustering import load_cluster_ids
    from packd.dataset import load_split
    from packd.distill import teacher_soft_logits
    from packd.metrics import best_threshold
    from packd.networks import load_models

    models, _ = load_models(teacher_paths)
    val = load_split(val_path)
    routes = load_cluster_ids(clusters_path)["val"]
    logits = teacher_soft_logits(models, val["inputs"], routes, 1024, torch.device("cpu"))
    return best_threshold(val["labels"], torch.sigmoid(torch.as_tensor(logits)).numpy())[1]


def frequency_val_f1(datasets: Path) -> float:
    from packd.dataset import load_split
    from packd.train import frequency_f1

    train, val = load_split(datasets / "train.npz"), load_split(datasets / "val.npz")
    return frequency_f1(train["labels"], val["labels"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    validate_config(config, SCHEMA)  # the schema's defaults filled in, as the rules see it
    results = args.results
    features, k = config["cluster"]["features"], int(config["cluster"]["k"])
    cells = [
        (seed, app, arch)
        for seed in args.seeds
        for app in config["apps"]
        for arch in config["archs"]
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="packd-teacher-budget-") as scratch:
        jobs = [
            (kind, recipe, seed, app, arch, str(results), config, scratch, cluster_id)
            for seed, app, arch in cells
            for kind, recipe, cluster_id in [
                *[("scratch cluster teacher", "", c) for c in range(k)],
                *[(kind, name, 0) for name in EARLIER_RECIPES for kind in ("teacher", "no_kd")],
            ]
        ]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            done = list(pool.map(run_job, jobs))
        for seed, app, arch in cells:
            run = results / f"teachers/seed{seed}/{app}/{arch}"
            clusters = results / f"clusters/seed{seed}/{app}/{features}-k{k}.parquet"
            val = results / f"datasets/{app}/val.npz"
            scratch_teachers = [
                Path(row["path"])
                for row in of_cell(done, "scratch cluster teacher", seed, app, arch)
            ]
            figures = {"frequency": frequency_val_f1(results / "datasets" / app)}
            for name in EARLIER_RECIPES:
                figures[f"{name} teacher"] = of_cell(done, "teacher", seed, app, arch, name)[0][
                    "val_f1"
                ]
                figures[f"{name} no KD"] = of_cell(done, "no_kd", seed, app, arch, name)[0][
                    "val_f1"
                ]
            figures["run teacher"] = best_val_f1(run / "all.pt")
            figures["run no KD"] = best_val_f1(
                results / f"students/seed{seed}/{app}/{arch}/no_kd.pt"
            )
            figures["routed, warm start"] = routed_val_f1(
                [run / f"{features}-k{k}/c{c}.pt" for c in range(k)], clusters, val
            )
            figures["routed, scratch"] = routed_val_f1(sorted(scratch_teachers), clusters, val)
            rows.append({"seed": seed, "app": app, "arch": arch, **figures})
    frame = pd.DataFrame(rows).set_index(["seed", "app", "arch"])
    gaps = pd.DataFrame(
        {
            **{
                f"{name}: teacher - {other}": frame[f"{name} teacher"] - frame[column]
                for name in [*EARLIER_RECIPES, "run"]
                for other, column in (("frequency", "frequency"), ("no KD", f"{name} no KD"))
            },
            "routed warm start - teacher": frame["routed, warm start"] - frame["run teacher"],
            "routed scratch - teacher": frame["routed, scratch"] - frame["run teacher"],
        }
    )
    sizes = {
        app: json.loads((results / f"datasets/{app}/sizes.json").read_text())["train"]
        for app in config["apps"]
    }
    fmt = lambda value: f"{value:.4f}"  # noqa: E731
    printed = "\n".join(
        [
            f"seeds {', '.join(map(str, args.seeds))}; {k} clusters ({features}); "
            "best validation F1 per cell:",
            frame.to_string(float_format=fmt),
            "",
            "differences per cell:",
            gaps.T.to_string(float_format=fmt),
            "",
            "mean over cells:",
            gaps.mean().to_string(float_format=fmt),
        ]
    )
    print(printed)
    if args.markdown:
        note = page_note(config, sizes)
        write_page(args.markdown, "Teacher budget: something to distil", note, printed)


if __name__ == "__main__":
    main()
