"""Regenerate bfs-uniform-s13.load_trace.txt.xz: a real ML-DPC-format load trace for the tests.

BFS on a uniform random graph (2^13 vertices, degree 8, seed 5), traced with sancov, filtered
through a small hierarchy (4 KiB L1D, 16 KiB L2, 64 KiB LLC) and written in the ML-DPC text format
with the simulator's banner lines, which the importer must skip.
Run from the repository root: python tests/data/make_dpc_fixture.py
"""

import tempfile
from pathlib import Path

from packd.cache import CacheLevel
from packd.traces import llc_trace_from_loads, write_load_trace_text
from packd.tracing import compile_kernel, trace_kernel

HERE = Path(__file__).parent
LEVELS = [
    CacheLevel("L1D", 4 * 1024, 4, latency=5),
    CacheLevel("L2", 16 * 1024, 8, latency=10),
    CacheLevel("LLC", 64 * 1024, 16, latency=20),
]

with tempfile.TemporaryDirectory() as scratch:
    binary = Path(scratch) / "graphkernels"
    compile_kernel(Path("workflow/kernels"), binary, instrumented=True)
    loads = trace_kernel(binary, "bfs", "uniform", 13, 8, 5)
trace = llc_trace_from_loads(loads.instr_id, loads.pc, loads.addr, LEVELS, 200)
banner = ["*** ChampSim Multicore Out-of-Order Simulator", "Read trace: bfs-uniform-s13"]
write_load_trace_text(trace, HERE / "bfs-uniform-s13.load_trace.txt.xz", banner)
print(f"{len(trace)} LLC accesses of {len(loads)} loads")
