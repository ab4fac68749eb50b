"""Training throughput and inference latency of each arch's teacher and student.

Usage: python benchmarks_scripts/bench_training.py [--paper] [--sizes JSON] [--device auto]
Prints the device, then per model: parameters, training samples/s (forward + backward + Adam step
at batch 256) and inference seconds per sample at batch 1 and 1024.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from packd.distill import bce_loss
from packd.metrics import latency_per_sample
from packd.models import PAPER_SIZES, build_model, count_parameters
from packd.train import resolve_device

REPO = Path(__file__).resolve().parents[1]


def config_sizes(configfile: Path) -> dict[str, dict[str, dict]]:
    """Teacher and student sizes of a workflow config (default: the demo's config.yaml)."""
    return yaml.safe_load(configfile.read_text())["models"]


def training_samples_per_second(
    model: torch.nn.Module, batch_size: int, steps: int, device: torch.device, seed: int = 0
) -> float:
    """Samples/s of forward + backward + Adam step (median step time: robust to a busy machine)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand((batch_size, 10, 10), generator=generator).to(device)
    labels = (torch.rand((batch_size, 256), generator=generator) < 0.05).to(device)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    step_seconds = []
    for step in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        bce_loss(model(inputs), labels).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= 2:
            step_seconds.append(time.perf_counter() - start)
    return batch_size / statistics.median(step_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="use the paper's sizes")
    parser.add_argument("--sizes", help="JSON {arch: {teacher: {...}, student: {...}}}")
    parser.add_argument(
        "--configfile", type=Path, default=REPO / "config.yaml", help="config to take sizes from"
    )
    parser.add_argument("--archs", nargs="*", help="only these archs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--repeats", type=int, default=10, help="timed inference repeats")
    args = parser.parse_args()

    sizes = PAPER_SIZES if args.paper else config_sizes(args.configfile)
    if args.sizes:
        sizes = json.loads(args.sizes)
    device = resolve_device(args.device)
    print(f"device: {device} (torch {torch.__version__}, {torch.get_num_threads()} CPU threads)")
    print(f"sizes: {'paper' if args.paper else 'custom' if args.sizes else str(args.configfile)}")
    header = f"{'arch':7} {'role':8} {'params':>10} {'train samples/s':>16}"
    print(f"{header} {'infer s/sample b1':>18} {'infer s/sample b1024':>21}")
    for arch, roles in sizes.items():
        if args.archs and arch not in args.archs:
            continue
        for role, size in roles.items():
            torch.manual_seed(0)
            model = build_model(arch, size)
            train_rate = training_samples_per_second(model, 256, args.steps, device)
            latency_b1 = latency_per_sample(model, 1, args.repeats, device)
            latency_b1024 = latency_per_sample(model, 1024, max(2, args.repeats // 3), device)
            print(
                f"{arch:7} {role:8} {count_parameters(model):>10,} {train_rate:>16,.0f} "
                f"{latency_b1:>18.2e} {latency_b1024:>21.2e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
