"""ROAST against HashedNet at equal memory, with the dense teacher for reference, on CPU.

Usage: python benchmarks_scripts/bench_hashing.py [--configfile config.yaml] [--batches 1 256 1024]
For each arch's teacher (config models.*.teacher) compressed to --budget-factor (default 1) times
the student's parameter count:
median process CPU milliseconds per batch (median again over --rounds interleaved rounds) of an
inference forward (eval, inference mode) and of a training step (forward + BCE + backward, no
optimizer), and the peak resident memory above the resident set before one such step (Linux
VmHWM, reset through /proc/self/clear_refs). Each (arch, method, batch) runs in its own process
with 1 thread, so no allocator state is shared.
Methods: dense; roast (inference reads the cached virtual weights); roast-nocache (the array is
touched before every inference batch, so each one gathers the tiles again); hashednet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from tabulate import tabulate

from packd import roast_native
from packd.benchpage import write_page
from packd.distill import bce_loss
from packd.hashednet import HashedNetWeight
from packd.hashing import MIN_ARRAY_SLOTS, compress_model, smallest_budget
from packd.models import build_model, count_parameters

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dense", "roast", "roast-torch", "roast-nocache", "hashednet")
WARMUP_BATCH = 2  # a first call pays torch's one-time set-up; pay it on a tiny batch
PAGE_NOTE = (
    "Process CPU milliseconds per batch, 1 thread (the median of each round's median, rounds "
    "interleaved across cells): `infer_ms` an inference forward, "
    "`train_ms` forward + BCE + backward (no optimizer). Peaks: how far the resident set rose "
    "above its size before one step. roast: the tile gather and the gradient scatter in "
    "packd.roast_native's C loops, one autograd node for all layers per training forward, and "
    "the inference cache; roast-torch: the same model on the PyTorch-ops path (index_select, "
    "scatter_add_), trained only (its cached inference is roast's); roast-nocache: the cache "
    "defeated before every batch; hashednet: per-element gather with hashes computed in the "
    "forward; dense: the teacher itself. The budgets are in the first table. See "
    "docs/hashing.md for how to read the ratios."
)
BUDGET_NOTE = (
    "budget: the real parameter count of both compressed models, --budget-factor times the "
    "student's or, where that cannot hold the teacher's dense parts (biases, norms) plus "
    f"{MIN_ARRAY_SLOTS} hashed slots, the smallest that can. ROAST array / HashedNet arrays: "
    "the hashed slots (budget less the dense parts); the ROAST tile shrinks until 8 tiles fit "
    "its array."
)
BOUND_NOTE = (
    "bound: HashedNet time / the dense teacher's time, the most a ROAST that runs the teacher's "
    "own matmuls could reach (ROAST with no gather cost at all)."
)

# The CPU target: ROAST this many times faster than HashedNet (inference: cached ROAST)
TARGETS = {"training": 3, "inference": 10}
TARGET_NOTE = (
    "training / inference >= Nx: whether ROAST's ratio meets the issue's CPU target; "
    "'no, bound below' where even the bound misses it."
)


def verdict(ratio: float, bound: float, target: float) -> str:
    """yes, no, or 'no, bound below' (no ROAST running the teacher's matmuls could meet it)."""
    if ratio >= target:
        return "yes"
    return "no, bound below" if bound < target else "no"


def resident_kib(field: str) -> int:
    """A VmRSS / VmHWM line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_extra_mib(step: Callable[[], None]) -> float:
    """MiB the resident set peaked above its size before one call of `step`."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = resident_kib("VmRSS")
    step()
    return (resident_kib("VmHWM") - before) / 1024


def median_cpu_ms(step: Callable[[], None], repeats: int) -> float:
    """Median process CPU ms of `step` (CPU time: robust to other jobs on a shared machine)."""
    step()
    seconds = []
    for _ in range(repeats):
        start = time.process_time()
        step()
        seconds.append(time.process_time() - start)
    return statistics.median(seconds) * 1e3


def student_count(arch: str, sizes: dict) -> int:
    """Parameters of the student of `arch` (config models.*.student)."""
    return count_parameters(build_model(arch, sizes[arch]["student"]))


def build(arch: str, method: str, sizes: dict, factor: int = 1) -> torch.nn.Module:
    """The teacher of `arch`, dense or compressed to `factor` times the student's count."""
    torch.manual_seed(0)
    teacher = build_model(arch, sizes[arch]["teacher"])
    # The count asked for, or the smallest budget that holds the teacher's dense parts (as the
    # workflow's roast and hashednet methods do)
    budget = smallest_budget(teacher, factor * student_count(arch, sizes))
    kind = method.split("-")[0]
    return teacher if kind == "dense" else compress_model(teacher, kind, budget, seed=0)


def budget_row(arch: str, sizes: dict, factor: int) -> list:
    """What each method of `arch` holds: the budget, ROAST's array and tile, HashedNet's arrays."""
    roast, hashednet = build(arch, "roast", sizes, factor), build(arch, "hashednet", sizes, factor)
    array = roast.roast_array
    hashed = [m for m in hashednet.modules() if isinstance(m, HashedNetWeight)]
    return [
        arch,
        count_parameters(build(arch, "dense", sizes)),
        student_count(arch, sizes),
        count_parameters(roast),
        array.weight.numel(),
        "x".join(map(str, array.tile)),
        len(array.readers),
        sum(m.weight.numel() for m in hashed),
    ]


def steps(model: torch.nn.Module, method: str, batch: int) -> tuple[Callable, Callable]:
    """(inference step, training step) on a fixed random batch; each takes a batch size."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand((batch, 10, 10), generator=generator)
    labels = torch.rand((batch, 256), generator=generator) < 0.05
    array = getattr(model, "roast_array", None)

    # The mode switches only when the phase changes, as a training loop's does once an epoch:
    # walking every module each step would add the same fixed cost to every method's time
    def infer(size: int = batch) -> None:
        if model.training:
            model.eval()
        if method == "roast-nocache":
            with torch.no_grad():
                array.weight.add_(0.0)  # a new version of the array: the cached weights are stale
        with torch.inference_mode():
            model(inputs[:size])

    def train(size: int = batch) -> None:
        if not model.training:
            model.train()
        model.zero_grad(set_to_none=True)
        bce_loss(model(inputs[:size]), labels[:size]).backward()

    return infer, train


def weight_mib(model: torch.nn.Module) -> float:
    """MiB of parameters, buffers and ROAST's cached virtual weights."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [
        m._cached_weight for m in model.modules() if getattr(m, "_cached_weight", None) is not None
    ]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors) / 2**20


def measure(
    arch: str, method: str, batch: int, what: str, sizes: dict, repeats: int, factor: int
) -> dict:
    """Times (what == "time") or memory (what == "memory") of one (arch, method, batch)."""
    torch.set_num_threads(1)
    if method == "roast-torch":  # this worker's process only
        os.environ["PACKD_ROAST_NATIVE"] = "0"
    model = build(arch, method, sizes, factor)
    infer, train = steps(model, method, batch)
    train(WARMUP_BATCH)
    infer(WARMUP_BATCH)  # last: ROAST's inference cache is there before the figures
    trains = method != "roast-nocache"  # training never reads the cache: the same as roast
    infers = method != "roast-torch"  # cached inference runs no gather: the same as roast
    figures = {}
    if what == "time":
        if infers:
            figures["infer_ms"] = median_cpu_ms(infer, repeats)
        if trains:
            figures["train_ms"] = median_cpu_ms(train, repeats)
        return figures
    figures = {"params": count_parameters(model), "weights_mib": weight_mib(model)}
    if infers:
        figures["infer_peak_mib"] = peak_extra_mib(infer)
    if trains:
        figures["train_peak_mib"] = peak_extra_mib(train)
    return figures


def run_worker(arguments: list[str], environment: dict | None = None) -> dict:
    """measure() in a child process (fresh heap, fresh peak), its figures parsed from stdout."""
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", *arguments],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return json.loads(completed.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--archs", nargs="*", default=["lstm", "mixer", "resnet"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 256, 1024])
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per figure")
    parser.add_argument(
        "--rounds", type=int, default=3, help="times every cell is timed, in turn; median kept"
    )
    parser.add_argument(
        "--budget-factor", type=int, default=1, help="budget: this many times the student's count"
    )
    parser.add_argument("--worker", nargs=4, metavar=("ARCH", "METHOD", "BATCH", "WHAT"))
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    sizes = yaml.safe_load(args.configfile.read_text())["models"]
    if args.worker:
        arch, method, batch, what = args.worker
        print(
            json.dumps(
                measure(arch, method, int(batch), what, sizes, args.repeats, args.budget_factor)
            )
        )
        return

    shown = args.configfile.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    kernels = "built" if roast_native.library() is not None else "NOT available (PyTorch path)"
    printed = [
        f"torch {torch.__version__}, 1 thread, sizes from {shown}, "
        f"median of {args.rounds} interleaved rounds of {args.repeats} timed batches, "
        f"budget {args.budget_factor}x the student's count; ROAST's C kernels: {kernels}"
    ]
    print(printed[0])
    budgets = [budget_row(arch, sizes, args.budget_factor) for arch in args.archs]
    headers = ["arch", "teacher params", "student params", "budget", "ROAST array"]
    headers += ["ROAST tile", "hashed matrices", "HashedNet arrays"]
    printed.append(tabulate(budgets, headers=headers) + "\n" + BUDGET_NOTE)
    print(printed[-1])
    # Tensors of 64 KiB and more get their own mapping, returned when freed: the resident set
    # then follows the live tensors instead of what glibc keeps of the warm-up's frees
    memory_environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    common = ["--configfile", str(args.configfile), "--repeats", str(args.repeats)]
    common += ["--budget-factor", str(args.budget_factor)]
    cells = [(a, m, b) for a in args.archs for b in args.batches for m in METHODS]
    # Rounds run every cell once each, in turn: a slow spell of a shared machine then lands on
    # one round of every method rather than on all rounds of one, and the median drops it
    times: dict[tuple, list[dict]] = {cell: [] for cell in cells}
    for round_index in range(args.rounds):
        for arch, method, batch in cells:
            figures = run_worker([arch, method, str(batch), "time", *common])
            times[arch, method, batch].append(figures)
            print(json.dumps([round_index, arch, method, batch, figures]), file=sys.stderr)
    rows = []
    for arch, method, batch in cells:
        row = {"arch": arch, "method": method, "batch": batch}
        for name in times[arch, method, batch][0]:
            row[name] = statistics.median(r[name] for r in times[arch, method, batch])
        memory = [arch, method, str(batch), "memory", *common]
        row |= run_worker(memory, memory_environment)
        rows.append(row)
    columns = ["arch", "method", "params", "batch", "infer_ms", "train_ms"]
    columns += ["weights_mib", "infer_peak_mib", "train_peak_mib"]
    table = [[row.get(column, "") for column in columns] for row in rows]
    printed.append(tabulate(table, headers=columns, floatfmt=".2f"))
    print(printed[-1])

    by_key = {(row["arch"], row["method"], row["batch"]): row for row in rows}
    ratios = []
    for arch in args.archs:
        for batch in args.batches:
            hashednet, roast = by_key[arch, "hashednet", batch], by_key[arch, "roast", batch]
            dense = by_key[arch, "dense", batch]
            infer = hashednet["infer_ms"] / roast["infer_ms"]
            infer_bound = hashednet["infer_ms"] / dense["infer_ms"]
            train = hashednet["train_ms"] / roast["train_ms"]
            train_torch = hashednet["train_ms"] / by_key[arch, "roast-torch", batch]["train_ms"]
            train_bound = hashednet["train_ms"] / dense["train_ms"]
            ratios.append(
                [
                    arch,
                    batch,
                    infer,
                    hashednet["infer_ms"] / by_key[arch, "roast-nocache", batch]["infer_ms"],
                    infer_bound,
                    train,
                    train_torch,
                    train_bound,
                    verdict(train, train_bound, TARGETS["training"]),
                    verdict(infer, infer_bound, TARGETS["inference"]),
                ]
            )
    headers = ["arch", "batch", "inference", "inference, no cache", "inference bound"]
    headers += ["training step", "training, PyTorch path", "training bound"]
    headers += [f"{name} >= {target}x" for name, target in TARGETS.items()]
    printed.append("\nHashedNet time / ROAST time (above 1: ROAST is faster)")
    printed.append(tabulate(ratios, headers=headers, floatfmt=".2f"))
    printed.append(BOUND_NOTE)
    printed.append(TARGET_NOTE)
    print("\n".join(printed[-4:]))
    if args.markdown:
        write_page(args.markdown, "ROAST against HashedNet on CPU", PAGE_NOTE, "\n".join(printed))


if __name__ == "__main__":
    main()
