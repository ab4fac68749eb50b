"""How far another machine's float kernels move the tables: the same models trained on one
machine with PyTorch's default kernel paths and with other paths, in units of the seed sd.

Usage: python benchmarks_scripts/cpu_kernels.py [--results results] [--configfile config.yaml]
       [--app bc] [--arch resnet] [--seeds 1 2 3] [--workers 2]
       [--markdown docs/benchmarks/cpu_kernels.md]
Reads a finished run's datasets and learning-rate choices; trains the whole-app teacher (first
seed) and the no-KD student (every seed given) at the run's recipe, each in a fresh process, under
every entry of KERNEL_SETTINGS: `default`; `aten-avx2`, PyTorch's own (ATen) kernels held to AVX2
(ATEN_CPU_CAPABILITY), as on a CPU without AVX-512; `no-onednn`, convolutions and matmuls without
oneDNN (torch.backends.mkldnn off: ATen's own convolution over MKL's GEMM), another summation order
as a different CPU or build takes. oneDNN itself cannot be held to AVX2 here: with
ONEDNN_MAX_CPU_ISA=AVX2 the ResNet student's backward pass crashed (segmentation fault, torch
2.13.0+cpu, AMD EPYC with AVX-512). Prints each model's test F1 (validation protocol) under each
setting, its difference from `default`, and that difference over the no-KD student's seed sd.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from packd.benchpage import write_page
from packd.config import validate_config

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"

# Environment of each setting's processes; every key of every setting is unset where not given.
KERNEL_SETTINGS = {
    "default": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "no-onednn": {"PACKD_BENCH_NO_ONEDNN": "1"},
}
PAGE_NOTE = (
    "Test micro-F1 (threshold and epoch chosen on validation) of models trained on this machine "
    "from the same seed and data under three kernel settings: `default` lets PyTorch pick its "
    "kernels for this CPU; `aten-avx2` holds PyTorch's own (ATen) kernels to AVX2, as on a CPU "
    "without AVX-512; `no-onednn` turns oneDNN off (ATen's own convolution over MKL's GEMM), "
    "another order of float sums, as another CPU or build takes. oneDNN could not be held to "
    "AVX2 (it crashed in the student's backward pass). `<setting> - default / seed sd`: the "
    "difference in units of the no-KD student's sd over the seeds under `default` (the run's "
    "unit of replication)."
)
# Run in a fresh interpreter so that the kernel settings apply from torch's first import
TRAIN_ONE = """
import json, os, sys
import torch
if os.environ.get("PACKD_BENCH_NO_ONEDNN"):
    torch.backends.mkldnn.enabled = False
from packd.cell import Cell
from packd.methods import method_settings
from packd.stages.evaluation import evaluate
from packd.stages.training import train_student, train_teacher
torch.set_num_threads(1)
job = json.loads(sys.argv[1])
splits, cell = job["splits"], Cell(job["seed"], job["app"], job["arch"])
if job["model"] == "teacher":
    train_teacher(cell, splits, job["config"]["models"][job["arch"]]["teacher"],
                  job["config"]["train"], job["checkpoint"], selection_path=job["selection"])
else:
    train_student(cell, splits, job["config"]["models"][job["arch"]],
                  method_settings("no_kd", job["config"]), job["config"]["train"],
                  job["checkpoint"], "no_kd", chosen_selection_path=job["chosen"])
metrics = evaluate(cell, splits, [job["checkpoint"]], job["out"], job["model"],
                   latency_repeats=1, device_name="cpu",
                   degree=job["config"]["evaluate"]["prefetch_degree"])
print(json.dumps({"f1": metrics["f1"], "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def run_one(job: dict) -> dict:
    every_key = {key for setting in KERNEL_SETTINGS.values() for key in setting}
    env = {key: value for key, value in os.environ.items() if key not in every_key}
    env |= KERNEL_SETTINGS[job["kernels"]]
    completed = subprocess.run(
        [sys.executable, "-c", TRAIN_ONE, json.dumps(job)],
        env=env,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{job['kernels']} {job['model']} seed {job['seed']} exited with "
            f"{completed.returncode}:\n{completed.stderr[-3000:]}"
        )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return {key: job[key] for key in ("kernels", "model", "seed")} | result


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--app", default="bc")
    parser.add_argument("--arch", default="resnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    validate_config(config, SCHEMA)  # the schema's defaults filled in, as the rules see it
    results, app, arch = args.results.resolve(), args.app, args.arch
    first = args.seeds[0]
    splits = {s: str(results / f"datasets/{app}/{s}.npz") for s in ("train", "val", "test")}
    with tempfile.TemporaryDirectory(prefix="packd-cpu-kernels-") as scratch:
        jobs = [
            {
                "kernels": kernels,
                "model": model,
                "seed": seed,
                "app": app,
                "arch": arch,
                "config": config,
                "splits": splits,
                "checkpoint": f"{scratch}/{kernels}-{model}-{seed}.pt",
                "out": f"{scratch}/{kernels}-{model}-{seed}.json",
                "selection": str(results / f"teachers/seed{first}/{app}/{arch}/selection.json"),
                "chosen": str(results / f"students/seed{first}/{app}/{arch}/no_kd.selection.json"),
            }  # fmt: skip
            for kernels in KERNEL_SETTINGS
            for model, seeds in (("teacher", [first]), ("no_kd", args.seeds))
            for seed in seeds
        ]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            rows = list(pool.map(run_one, jobs))
    frame = pd.DataFrame(rows)
    capabilities = frame.groupby("kernels")["capability"].first().to_dict()
    f1 = frame.pivot_table(index=["model", "seed"], columns="kernels", values="f1")
    seed_sd = f1.loc["no_kd", "default"].std(ddof=1)
    others = [kernels for kernels in KERNEL_SETTINGS if kernels != "default"]
    for kernels in others:
        f1[f"{kernels} - default"] = f1[kernels] - f1["default"]
        f1[f"{kernels} - default / seed sd"] = f1[f"{kernels} - default"] / seed_sd
    fmt = lambda value: f"{value:.4f}"  # noqa: E731
    printed = "\n".join(
        [
            f"{app}/{arch}; kernels in use: "
            + ", ".join(f"{name}: {value}" for name, value in capabilities.items()),
            f1.to_string(float_format=fmt),
            "",
            f"no-KD student's test F1 sd over seeds {args.seeds} (default kernels): {seed_sd:.4f}",
            *(
                f"{kernels}: mean |difference| / seed sd "
                f"{f1[f'{kernels} - default / seed sd'].abs().mean():.2f}, largest "
                f"{f1[f'{kernels} - default / seed sd'].abs().max():.2f}; bit-identical models: "
                f"{int((f1[f'{kernels} - default'] == 0).sum())} of {len(f1)}"
                for kernels in others
            ),
        ]
    )
    print(printed)
    if args.markdown:
        write_page(args.markdown, "Another CPU's float kernels", PAGE_NOTE, printed)


if __name__ == "__main__":
    main()
