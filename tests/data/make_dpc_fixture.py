"""Regenerate bfs-uniform-s13.load_trace.txt.xz: a real ML-DPC-format load trace for the tests.

BFS on a uniform random graph (2^13 vertices, degree 8, seed 5), traced with sancov, filtered
through a small hierarchy (4 KiB L1D, 16 KiB L2, 64 KiB LLC) and written in the ML-DPC text format
with the simulator's banner lines, which the importer must skip.
Run from the repository root: python tests/data/make_dpc_fixture.py
"""

import lzma
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from packd.cache import CacheLevel, llc_trace_from_loads
from packd.trace_io import TRACE_COLUMNS
from packd.tracing import compile_kernel, trace_kernel

HERE = Path(__file__).parent
LEVELS = [
    CacheLevel("L1D", 4 * 1024, 4, latency=5),
    CacheLevel("L2", 16 * 1024, 8, latency=10),
    CacheLevel("LLC", 64 * 1024, 16, latency=20),
]


def write_load_trace_text(trace: pd.DataFrame, path: Path, banner: Sequence[str] = ()) -> None:
    """Write a trace in the ML-DPC text format (`.txt` or `.txt.xz`) after any banner lines."""
    lines = [*banner]
    lines += [
        f"{instr_id}, {cycle}, {addr:x}, {pc:x}, {int(hit)}"
        for instr_id, cycle, addr, pc, hit in trace[list(TRACE_COLUMNS)].itertuples(index=False)
    ]
    text = ("\n".join(lines) + "\n").encode()
    opener = lzma.open if str(path).endswith(".xz") else open
    with opener(path, "wb") as stream:
        stream.write(text)


with tempfile.TemporaryDirectory() as scratch:
    binary = Path(scratch) / "graphkernels"
    compile_kernel(Path("workflow/kernels"), binary, instrumented=True)
    loads = trace_kernel(binary, "bfs", "uniform", 13, 8, 5)
trace = llc_trace_from_loads(loads.instr_id, loads.pc, loads.addr, LEVELS, 200)
banner = ["*** ChampSim Multicore Out-of-Order Simulator", "Read trace: bfs-uniform-s13"]
write_load_trace_text(trace, HERE / "bfs-uniform-s13.load_trace.txt.xz", banner)
print(f"{len(trace)} LLC accesses of {len(loads)} loads")
