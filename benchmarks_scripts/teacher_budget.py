"""Is there something to distil? The teacher recipe of the default run against the previous one,
and the cluster teachers warm-started from the whole-app teacher against trained from scratch.

Usage: python benchmarks_scripts/teacher_budget.py [--results results] [--configfile config.yaml]
       [--seed 1] [--workers 2] [--markdown docs/benchmarks/teacher_budget.md]
Reads a finished default run (its datasets, clusters, teachers and no-KD students) and trains
what the run did not: the previous default's recipe (8,000 training samples, 5 teacher and 6
student epochs at a constant rate) and cluster teachers from scratch (train.cluster_teachers
init: scratch, the authors' way, for as many optimiser steps as the whole-app teacher). Every
figure is a best validation micro-F1 (the selection criterion; nothing is read on test).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from packd.benchpage import write_page
from packd.config import validate_config

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"

# The previous default's recipe (config.yaml before the teachers were given data and epochs)
PREVIOUS_SAMPLES = 8000
PREVIOUS_PHASES = {
    "teacher": {"epochs": 5, "patience": 3, "min_epochs": 3, "schedule": "constant"},
    "student": {"epochs": 6, "patience": 3, "min_epochs": 3, "schedule": "constant"},
}
PAGE_NOTE = (
    "Best validation micro-F1 per (app, arch) cell, seed as given. `frequency`: each bit's "
    "training frequency as its score. `previous`: the previous default recipe (8,000 training "
    "samples; teacher 5 epochs, student 6, constant rate, patience 3), at the learning rate the "
    "run chose. `run`: the run's own whole-app teacher and no-KD student (40,000 samples, 10 "
    "cosine epochs, patience 5). `routed`: each validation sample scored by its cluster's "
    "teacher, one threshold for all: `warm start` is the run's (the whole-app teacher fine-tuned "
    "on each cluster), `scratch` trains each cluster teacher from a fresh initialisation for as "
    "many steps as the whole-app teacher."
)


def best_val_f1(path: Path) -> float:
    from packd.checkpoint import load_checkpoint

    header, _ = load_checkpoint(path)
    return max(record["val_f1"] for record in header["history"])


def previous_recipe_data(datasets: Path, scratch: Path, seed: int) -> dict[str, Path]:
    """The run's splits with the training split cut to the previous default's sample count."""
    from packd.dataset import load_split, save_split, subsample_split

    paths = {split: datasets / f"{split}.npz" for split in ("val", "test")}
    paths["train"] = scratch / "train.npz"
    if not paths["train"].exists():
        train = load_split(datasets / "train.npz")
        save_split(paths["train"], subsample_split(train, PREVIOUS_SAMPLES, seed, 0))
    return paths


def previous_train_config(train: dict) -> dict:
    train = copy.deepcopy(train)
    for phase, settings in PREVIOUS_PHASES.items():
        train[phase].update(settings)
    return train


def run_job(job: tuple) -> dict:
    """One trained figure: the previous recipe's teacher or no-KD student, or one cluster
    teacher from scratch."""
    import torch

    from packd.cell import Cell
    from packd.methods import method_settings
    from packd.stages.training import train_student, train_teacher

    torch.set_num_threads(1)
    kind, app, arch, results, config, seed, scratch, cluster_id = job
    cell = Cell(seed, app, arch)
    datasets = Path(results) / "datasets" / app
    selection = Path(results) / f"teachers/seed{seed}/{app}/{arch}/selection.json"
    folder = Path(scratch) / f"{app}-{arch}"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"{kind}-{cluster_id}.pt"
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
        return {"kind": kind, "app": app, "arch": arch, "path": str(checkpoint)}
    splits = previous_recipe_data(datasets, Path(scratch) / app, seed)
    train = previous_train_config(config["train"])
    if kind == "previous teacher":
        train_teacher(
            cell, splits, config["models"][arch]["teacher"], train, checkpoint,
            selection_path=selection,
        )  # fmt: skip
    else:
        train_student(
            cell, splits, config["models"][arch], method_settings("no_kd", config), train,
            checkpoint, "no_kd",
        )  # fmt: skip
    return {"kind": kind, "app": app, "arch": arch, "val_f1": best_val_f1(checkpoint)}


def of_cell(done: list[dict], kind: str, app: str, arch: str) -> list[dict]:
    """The finished jobs of one kind in one cell."""
    return [row for row in done if (row["kind"], row["app"], row["arch"]) == (kind, app, arch)]


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
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    validate_config(config, SCHEMA)  # the schema's defaults filled in, as the rules see it
    results, seed = args.results, args.seed
    features, k = config["cluster"]["features"], int(config["cluster"]["k"])
    cells = [(app, arch) for app in config["apps"] for arch in config["archs"]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="packd-teacher-budget-") as scratch:
        jobs = [
            (kind, app, arch, str(results), config, seed, scratch, cluster_id)
            for app, arch in cells
            for kind, cluster_id in [
                *[("scratch cluster teacher", c) for c in range(k)],
                ("previous teacher", 0),
                ("previous no_kd", 0),
            ]
        ]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            done = list(pool.map(run_job, jobs))
        for app, arch in cells:
            run = results / f"teachers/seed{seed}/{app}/{arch}"
            clusters = results / f"clusters/seed{seed}/{app}/{features}-k{k}.parquet"
            val = results / f"datasets/{app}/val.npz"
            scratch_teachers = [
                Path(row["path"]) for row in of_cell(done, "scratch cluster teacher", app, arch)
            ]
            figures = {
                "frequency": frequency_val_f1(results / "datasets" / app),
                "previous teacher": of_cell(done, "previous teacher", app, arch)[0]["val_f1"],
                "previous no KD": of_cell(done, "previous no_kd", app, arch)[0]["val_f1"],
                "run teacher": best_val_f1(run / "all.pt"),
                "run no KD": best_val_f1(results / f"students/seed{seed}/{app}/{arch}/no_kd.pt"),
                "routed, warm start": routed_val_f1(
                    [run / f"{features}-k{k}/c{c}.pt" for c in range(k)], clusters, val
                ),
                "routed, scratch": routed_val_f1(sorted(scratch_teachers), clusters, val),
            }
            rows.append({"app": app, "arch": arch, **figures})
    frame = pd.DataFrame(rows).set_index(["app", "arch"])
    gaps = pd.DataFrame(
        {
            "previous: teacher - frequency": frame["previous teacher"] - frame["frequency"],
            "previous: teacher - no KD": frame["previous teacher"] - frame["previous no KD"],
            "run: teacher - frequency": frame["run teacher"] - frame["frequency"],
            "run: teacher - no KD": frame["run teacher"] - frame["run no KD"],
            "routed warm start - teacher": frame["routed, warm start"] - frame["run teacher"],
            "routed scratch - teacher": frame["routed, scratch"] - frame["run teacher"],
        }
    )
    fmt = lambda value: f"{value:.4f}"  # noqa: E731
    printed = "\n".join(
        [
            f"seed {seed}; {k} clusters ({features}); best validation F1 per cell:",
            frame.to_string(float_format=fmt),
            "",
            "differences per cell:",
            gaps.to_string(float_format=fmt),
            "",
            "mean over cells:",
            gaps.mean().to_string(float_format=fmt),
        ]
    )
    print(printed)
    if args.markdown:
        write_page(args.markdown, "Teacher budget: something to distil", PAGE_NOTE, printed)


if __name__ == "__main__":
    main()
