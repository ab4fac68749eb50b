"""Throughput of the cache filter and of the load-trace parser.

    python benchmarks_scripts/bench_cache.py [--accesses 20000000] [--lines 1000000]

Prints accesses/s of ``simulate_hierarchy`` on the ChampSim default hierarchy (after a JIT
warm-up) for a mixed stream (half random lines over 64 GiB, half 8-byte streaming), and for the
pure random and pure streaming halves; then lines/s of ``parse_load_trace`` on a generated
``.txt.xz`` load trace (decompression included).
"""

from __future__ import annotations

import argparse
import lzma
import tempfile
import time
from pathlib import Path

import numpy as np

from packd.cache import CHAMPSIM_DEFAULT, simulate_hierarchy
from packd.trace_io import parse_load_trace


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_cache(n: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    half = n // 2
    random_part = rng.integers(0, 1 << 30, half, dtype=np.int64) * 64
    stream_part = np.arange(n - half, dtype=np.int64) * 8 + (1 << 40)
    mixed = np.empty(n, dtype=np.int64)
    mixed[0::2] = random_part
    mixed[1::2] = stream_part[: len(mixed[1::2])]
    simulate_hierarchy(mixed[:10_000], CHAMPSIM_DEFAULT)  # JIT warm-up (or cache load)
    for name, addresses in (
        ("mixed", mixed),
        ("random", random_part),
        ("streaming", stream_part),
    ):
        dt = _best_of(lambda a=addresses: simulate_hierarchy(a, CHAMPSIM_DEFAULT), repeats)
        hits = np.bincount(simulate_hierarchy(addresses, CHAMPSIM_DEFAULT), minlength=4)
        frac = " ".join(f"{x / len(addresses):.3f}" for x in hits)
        print(
            f"simulate_hierarchy {name:9s}: {len(addresses):>11,d} accesses in {dt:6.3f} s = "
            f"{len(addresses) / dt / 1e6:6.1f} M accesses/s  (L1/L2/LLC/mem {frac})"
        )


def bench_parser(lines: int, repeats: int) -> None:
    rng = np.random.default_rng(1)
    instr = np.cumsum(rng.integers(1, 20, lines))
    cycle = instr * 2 + rng.integers(0, 50, lines)
    addr = rng.integers(0x7F00_0000_0000, 0x7FFF_FFFF_FFFF, lines)
    pc = rng.integers(0x400000, 0x500000, lines)
    hit = rng.integers(0, 2, lines)
    body = "\n".join(
        f"{i}, {c}, {a:x}, {p:x}, {h}"
        for i, c, a, p, h in zip(
            instr.tolist(), cycle.tolist(), addr.tolist(), pc.tolist(), hit.tolist(), strict=True
        )
    )
    text = "*** ChampSim\nRead 1 trace\n" + body + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "bench.txt.xz"
        p.write_bytes(lzma.compress(text.encode(), preset=1))
        txt = Path(tmp) / "bench.txt"
        txt.write_text(text)
        parse_load_trace(txt)  # JIT warm-up
        for path in (p, txt):
            dt = _best_of(lambda path=path: parse_load_trace(path), repeats)
            print(
                f"parse_load_trace {path.name:13s}: {lines:>9,d} lines in {dt:6.3f} s = "
                f"{lines / dt / 1e6:5.2f} M lines/s"
            )
        t0 = time.perf_counter()
        with lzma.open(p) as fh:
            fh.read()
        print(f"  (xz decompression alone: {time.perf_counter() - t0:.3f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accesses", type=int, default=20_000_000)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bench_cache(args.accesses, args.repeats)
    bench_parser(args.lines, args.repeats)


if __name__ == "__main__":
    main()
