"""How far another CPU's float kernels move the tables: the same models trained twice on one
machine, once with PyTorch's best instruction set and once held to AVX2, in units of the seed sd.

Usage: python benchmarks_scripts/cpu_kernels.py [--results results] [--configfile config.yaml]
       [--app bc] [--arch resnet] [--seeds 1 2 3] [--workers 2]
       [--markdown docs/benchmarks/cpu_kernels.md]
Reads a finished run's datasets and teacher selection; trains the whole-app teacher (first seed)
and the no-KD student (every seed given) at the run's recipe in fresh processes with
ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA unset (`default`) or set to AVX2 (`avx2`), as a
machine without AVX-512 would run them. Prints each model's test F1 (validation protocol) under
both, the difference, and the seed sd of the no-KD student's F1 under `default`.
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

KERNEL_SETTINGS = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
PAGE_NOTE = (
    "Test micro-F1 (threshold and epoch chosen on validation) of models trained twice on this "
    "machine from the same seed and data: `default` lets PyTorch use its best kernels for this "
    "CPU, `avx2` holds PyTorch (ATen) and oneDNN to AVX2, as on a CPU without AVX-512. "
    "`difference / seed sd`: the two runs' difference in units of the no-KD student's sd over "
    "the seeds (the run's unit of replication)."
)
# Run in a fresh interpreter so that the kernel settings apply from torch's first import
TRAIN_ONE = """
import json, sys
import torch
from packd.methods import method_settings
from packd.stages.evaluation import evaluate
from packd.stages.training import train_student, train_teacher
torch.set_num_threads(1)
job = json.loads(sys.argv[1])
splits = job["splits"]
if job["model"] == "teacher":
    train_teacher(splits, job["arch"], job["config"]["models"][job["arch"]]["teacher"],
                  job["config"]["train"], job["seed"], job["checkpoint"], job["app"],
                  selection_path=job["selection"])
else:
    train_student(splits, job["arch"], job["config"]["models"][job["arch"]],
                  method_settings("no_kd", job["config"]), job["config"]["train"], job["seed"],
                  job["checkpoint"], job["app"], "no_kd", chosen_selection_path=job["chosen"])
metrics = evaluate(splits, [job["checkpoint"]], job["out"], job["app"], job["arch"], job["model"],
                   latency_repeats=1, device_name="cpu")
print(json.dumps({"f1": metrics["f1"], "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def run_one(job: dict) -> dict:
    env = {**os.environ, **KERNEL_SETTINGS[job["kernels"]]}
    for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        if key not in KERNEL_SETTINGS[job["kernels"]]:
            env.pop(key, None)
    completed = subprocess.run(
        [sys.executable, "-c", TRAIN_ONE, json.dumps(job)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
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
    f1["difference"] = f1["avx2"] - f1["default"]
    f1["difference / seed sd"] = f1["difference"] / seed_sd
    fmt = lambda value: f"{value:.4f}"  # noqa: E731
    printed = "\n".join(
        [
            f"{app}/{arch}; kernels in use: "
            + ", ".join(f"{name}: {value}" for name, value in capabilities.items()),
            f1.to_string(float_format=fmt),
            "",
            f"no-KD student's test F1 sd over seeds {args.seeds} (default kernels): {seed_sd:.4f}",
            "mean |difference| / seed sd: "
            f"{f1['difference / seed sd'].abs().mean():.2f}; "
            f"bit-identical models: {int((f1['difference'] == 0).sum())} of {len(f1)}",
        ]
    )
    print(printed)
    if args.markdown:
        write_page(args.markdown, "Another CPU's float kernels", PAGE_NOTE, printed)


if __name__ == "__main__":
    main()
