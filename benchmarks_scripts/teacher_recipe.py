"""Why a teacher does not use its capacity: the whole-app teacher retrained with one change to
its recipe at a time, on a finished run's data, against the run's teacher and plain MLP.

Usage: python benchmarks_scripts/teacher_recipe.py [--results results] [--configfile config.yaml]
       [--seed 1] [--workers 2] [--markdown docs/benchmarks/teacher_recipe.md]
Each variant trains at the learning rate the run chose for that cell (selection.json), with the
config's teacher settings except the one change. Prints the best validation micro-F1 per cell
(the selection criterion; nothing is chosen on test) and the mean over apps per arch.
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

# name -> (what changes, a function of (train config, teacher size, arch) -> (train, size))
VARIANTS = {
    "cosine": "learning rate decayed to 0 by a cosine over the epochs",
    "epochs+60%": "8 epochs instead of 5 (the grid's teachers often peak at the last epoch)",
    "shallow": "LSTM 1 layer, Mixer depth 2 (ResNet unchanged): is depth the trouble?",
}
PAGE_NOTE = (
    "Best validation micro-F1 of the whole-app teacher (seed as given), retrained with one "
    "change to its recipe, at the learning rate the run chose for the cell. `as run`: the "
    "run's own teacher; `mlp`: the run's one-hidden-layer MLP of the teacher's size. A variant "
    "that helps raises the teacher towards or above the MLP."
)


def variant_settings(name: str, train: dict, size: dict, arch: str) -> tuple[dict, dict]:
    """The train config and teacher size of one variant."""
    train, size = copy.deepcopy(train), dict(size)
    if name == "cosine":
        train["teacher"]["schedule"] = "cosine"
    elif name == "epochs+60%":
        train["teacher"]["epochs"] = round(train["teacher"]["epochs"] * 1.6)
    elif name == "shallow":
        if arch == "lstm":
            size["layers"] = 1
        elif arch == "mixer":
            size["depth"] = 2
    else:
        raise ValueError(f"unknown variant {name!r}; valid: {sorted(VARIANTS)}")
    return train, size


def best_val_f1(path: Path) -> float:
    from packd.checkpoint import load_checkpoint

    header, _ = load_checkpoint(path)
    return max(record["val_f1"] for record in header["history"])


def train_variant(job: tuple) -> dict:
    """One (variant, app, arch): train the teacher, return its best validation F1."""
    import torch

    from packd.cell import Cell
    from packd.stages.training import train_teacher

    torch.set_num_threads(1)
    name, app, arch, results, config, seed, scratch = job
    train, size = variant_settings(name, config["train"], config["models"][arch]["teacher"], arch)
    datasets = Path(results) / "datasets" / app
    checkpoint = Path(scratch) / f"{name}-{app}-{arch}.pt"
    train_teacher(
        Cell(seed, app, arch),
        {split: datasets / f"{split}.npz" for split in ("train", "val", "test")},
        size,
        train,
        checkpoint,
        selection_path=Path(results) / f"teachers/seed{seed}/{app}/{arch}/selection.json",
    )
    return {"variant": name, "app": app, "arch": arch, "val_f1": best_val_f1(checkpoint)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    validate_config(config, SCHEMA)  # the schema's defaults filled in, as the rules see it
    results, seed = args.results, args.seed
    cells = [(app, arch) for app in config["apps"] for arch in config["archs"]]
    rows = []
    for app, arch in cells:
        run = results / f"teachers/seed{seed}/{app}/{arch}/all.pt"
        mlp = results / f"students/seed{seed}/{app}/{arch}/mlp.pt"
        rows.append({"variant": "as run", "app": app, "arch": arch, "val_f1": best_val_f1(run)})
        if mlp.exists():
            rows.append({"variant": "mlp", "app": app, "arch": arch, "val_f1": best_val_f1(mlp)})
    with tempfile.TemporaryDirectory(prefix="packd-teacher-recipe-") as scratch:
        jobs = [
            (name, app, arch, str(results), config, seed, scratch)
            for name in args.variants
            for app, arch in cells
        ]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            rows += list(pool.map(train_variant, jobs))
    frame = pd.DataFrame(rows)
    order = ["as run", "mlp", *args.variants]
    per_cell = frame.pivot_table(index=["app", "arch"], columns="variant", values="val_f1")
    per_cell = per_cell[[name for name in order if name in per_cell.columns]]
    per_arch = per_cell.groupby(level="arch").mean()
    lines = [
        f"seed {seed}; variants: "
        + "; ".join(f"{name}: {VARIANTS[name]}" for name in args.variants),
        "",
        "best validation F1 per cell:",
        per_cell.to_string(float_format=lambda value: f"{value:.4f}"),
        "",
        "mean over apps, per arch:",
        per_arch.to_string(float_format=lambda value: f"{value:.4f}"),
    ]
    printed = "\n".join(lines)
    print(printed)
    if args.markdown:
        write_page(args.markdown, "Teacher recipe: one change at a time", PAGE_NOTE, printed)


if __name__ == "__main__":
    main()
