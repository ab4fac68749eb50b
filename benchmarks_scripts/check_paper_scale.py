"""Do paper-size models leave the label-frequency plateau with config/paper.yaml's settings?

Trains each arch's teacher and student of a config (default config/paper.yaml) for a few epochs
on a small sample of one app's dataset, with that config's training settings (learning rate per
arch, prior bias), and prints validation F1 per epoch beside the plateau (the F1 of the bits'
training frequencies). A CPU check; on a GPU pass --device cuda and more samples.

    python benchmarks_scripts/check_paper_scale.py results/datasets/bc --samples 4000 --epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
import yaml

from packd.config import validate_config
from packd.dataset import load_split, subsample_split
from packd.models import build_model, count_parameters
from packd.train import PhaseSettings, frequency_f1, seed_everything, train_phase

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a folder with train.npz, val.npz, test.npz")
    parser.add_argument("--config", type=Path, default=Path("config/paper.yaml"))
    parser.add_argument("--samples", type=int, default=4000, help="training samples kept")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    config = yaml.safe_load(arguments.config.read_text())
    validate_config(config, SCHEMA)  # the schema's defaults filled in, as the rules see it
    splits = {
        name: load_split(arguments.dataset / f"{name}.npz") for name in ("train", "val", "test")
    }
    splits["train"] = subsample_split(splits["train"], arguments.samples, 0, 0)
    splits["val"] = subsample_split(splits["val"], arguments.samples // 4, 0, 1)
    splits["test"] = subsample_split(splits["test"], arguments.samples // 4, 0, 2)
    plateau = frequency_f1(splits["train"]["labels"], splits["val"]["labels"])
    print(f"{arguments.dataset}: {arguments.samples} training samples; plateau F1 {plateau:.4f}")
    print("| arch | role | params | lr | val F1 per epoch | s/epoch | left the plateau |")
    print("|---|---|---|---|---|---|---|")
    for arch in config["archs"]:
        for role in ("teacher", "student"):
            settings = PhaseSettings.from_config(config["train"], role, arch)
            settings = dataclasses.replace(
                settings,
                epochs=arguments.epochs,
                min_epochs=arguments.epochs,
                device=arguments.device,
            )
            seed_everything(0)
            model = build_model(arch, config["models"][arch][role])
            started = time.perf_counter()
            result = train_phase(
                model,
                (splits["train"]["inputs"], splits["train"]["labels"]),
                splits,
                settings,
                kd=None,
                seed=0,
            )
            seconds = (time.perf_counter() - started) / max(1, len(result.history))
            scores = [record["val_f1"] for record in result.history]
            left = "yes" if max(scores) > plateau + 1e-4 else "no"
            print(
                f"| {arch} | {role} | {count_parameters(model):,} | {settings.lr:g} | "
                f"{', '.join(f'{score:.4f}' for score in scores)} | {seconds:.1f} | {left} |"
            )


if __name__ == "__main__":
    main()
