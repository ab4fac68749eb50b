"""Throughput of the prefetch replay, and what each classic prefetcher achieves on one stream.

    python benchmarks_scripts/bench_prefetch.py [TRACE.parquet] [--accesses 1000000]

The stream is the given Parquet load trace (e.g. results/traces/cc.parquet, its first
--accesses accesses) when that file exists, else a synthetic one: 16 PCs each walking its own
array with its own stride (1..8 lines), interleaved with random accesses (a third of the stream).
On ChampSim's default LLC (2 MiB, 16 ways), for each prefetcher at degree 2 (best-offset at its
paper's degree 1) it prints the seconds to generate the prefetches, the replay throughput with
them (accesses/s of one replay_llc call, after a JIT warm-up), and the report's ratios. "random
model" stands for a model's file: 2 random deltas in [-128, 128) per access. A last line times
prefetches_from_scores on a (100000, 256) score array.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from packd.cache import CHAMPSIM_DEFAULT
from packd.prefetch import (
    Prefetches,
    best_offset_prefetches,
    evaluate_prefetches,
    ip_stride_prefetches,
    next_line_prefetches,
    prefetches_from_scores,
    replay_llc,
)
from packd.trace_io import read_trace_parquet

LLC = CHAMPSIM_DEFAULT[-1]


def synthetic_stream(accesses: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(instr_ids, block addresses, pcs): strided per-PC walks mixed with random accesses."""
    rng = np.random.default_rng(seed)
    n_pcs = 16
    is_random = rng.random(accesses) < 1 / 3
    pc_index = rng.integers(0, n_pcs, accesses)
    strides = np.arange(1, n_pcs + 1) % 8 + 1
    bases = (np.arange(n_pcs, dtype=np.int64) + 1) << 28
    step = np.zeros(accesses, dtype=np.int64)
    for pc in range(n_pcs):
        mine = np.flatnonzero((pc_index == pc) & ~is_random)
        step[mine] = np.arange(mine.size)
    lines = bases[pc_index] + step * strides[pc_index]
    lines[is_random] = rng.integers(0, 1 << 32, int(is_random.sum()))
    pcs = np.where(is_random, 0x500000, 0x400000 + pc_index * 4).astype(np.uint64)
    instr_ids = np.cumsum(rng.integers(1, 20, accesses)).astype(np.uint64)
    return instr_ids, lines, pcs


def trace_stream(path: Path, accesses: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(instr_ids, block addresses, pcs) of the first accesses of a Parquet load trace."""
    trace, _ = read_trace_parquet(path)
    trace = trace.iloc[:accesses]
    lines = (trace["addr"].to_numpy() >> np.uint64(6)).astype(np.int64)
    return trace["instr_id"].to_numpy(), lines, trace["pc"].to_numpy()


def random_model_prefetches(instr_ids: np.ndarray, lines: np.ndarray, seed: int) -> Prefetches:
    """Two random deltas in [-128, 128) \\ {0} per access, as a model's file would hold."""
    rng = np.random.default_rng(seed)
    deltas = rng.integers(-128, 127, size=(lines.size, 2))
    deltas[deltas >= 0] += 1
    targets = lines[:, None] + deltas
    keep = targets >= 0
    issuing = np.repeat(instr_ids, 2).reshape(-1, 2)
    return Prefetches(issuing[keep], targets[keep].astype(np.uint64) << np.uint64(6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trace", nargs="?", type=Path, help="Parquet load trace (optional)")
    parser.add_argument("--accesses", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.trace is not None and args.trace.exists():
        instr_ids, lines, pcs = trace_stream(args.trace, args.accesses)
        source = str(args.trace)
    else:
        instr_ids, lines, pcs = synthetic_stream(args.accesses, args.seed)
        source = "synthetic"
    print(
        f"stream: {source}, {lines.size:,d} accesses; LLC {LLC.size_bytes >> 10} KiB, "
        f"{LLC.ways} ways, {LLC.sets} sets"
    )

    prefetchers = {
        "none": lambda: Prefetches.empty(),
        "next-line": lambda: next_line_prefetches(instr_ids, lines, degree=2),
        "ip-stride": lambda: ip_stride_prefetches(instr_ids, lines, pcs, degree=2),
        "best-offset": lambda: best_offset_prefetches(instr_ids, lines, degree=1),
        "random model": lambda: random_model_prefetches(instr_ids, lines, args.seed),
    }
    # JIT warm-up (or cache load) of every kernel on a short prefix.
    short = slice(0, 10_000)
    next_line_prefetches(instr_ids[short], lines[short])
    ip_stride_prefetches(instr_ids[short], lines[short], pcs[short])
    best_offset_prefetches(instr_ids[short], lines[short])
    replay_llc(instr_ids[short], lines[short], Prefetches.empty(), LLC)

    header = (
        f"{'prefetcher':13s} {'issued':>10s} {'gen s':>6s} {'replay s':>8s} {'M acc/s':>7s} "
        f"{'accuracy':>8s} {'coverage':>8s} {'miss red':>8s} {'extra':>6s} {'traffic':>7s}"
    )
    print(header)
    print("-" * len(header))
    for name, make in prefetchers.items():
        start = time.perf_counter()
        prefetches = make()
        generate_s = time.perf_counter() - start
        replay_s = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            replay_llc(instr_ids, lines, prefetches, LLC)
            replay_s = min(replay_s, time.perf_counter() - start)
        report = evaluate_prefetches(instr_ids, lines, prefetches, LLC)
        print(
            f"{name:13s} {report.issued:>10,d} {generate_s:6.3f} {replay_s:8.3f} "
            f"{lines.size / replay_s / 1e6:7.2f} {report.accuracy:8.3f} {report.coverage:8.3f} "
            f"{report.miss_reduction:8.3f} {report.extra_traffic:6.3f} {report.traffic_ratio:7.3f}"
        )
    print(f"baseline LLC misses: {report.baseline_misses:,d} of {report.accesses:,d} accesses")

    samples = min(100_000, lines.size)
    scores = np.random.default_rng(args.seed).random((samples, 256), dtype=np.float32)
    start = time.perf_counter()
    model = prefetches_from_scores(scores, instr_ids[:samples], lines[:samples], 0.99, degree=2)
    print(
        f"prefetches_from_scores: {samples:,d} x 256 scores -> {len(model):,d} prefetches in "
        f"{time.perf_counter() - start:.3f} s"
    )


if __name__ == "__main__":
    main()
