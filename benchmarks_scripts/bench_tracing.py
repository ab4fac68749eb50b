"""Benchmark of load tracing: uninstrumented vs sancov-traced graph kernels, and lackey's speed.

Times are the program's own ROI seconds (the kernel only, not graph construction), min of
--repeats runs. "traced" includes the hook calls and writing every record to the trace file.

    python benchmarks_scripts/bench_tracing.py [--scale 14] [--degree 16] [--lackey-scale 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packd.tracing import (
    KERNELS,
    RECORD_DTYPE,
    _fast_tmp_dir,
    _LackeyParser,
    compile_kernel,
    kernel_info,
    trace_command_lackey,
    trace_kernel,
)

KERNEL_DIR = Path(__file__).resolve().parents[1] / "workflow" / "kernels"


def roi_seconds(binary: Path, kernel: str, args: argparse.Namespace, trace_dir: str | None):
    """Min ROI seconds over the repeats, and the number of loads written (0 if not traced)."""
    best, loads = float("inf"), 0
    for _ in range(args.repeats):
        env = None
        if trace_dir == os.devnull:  # records built in memory, writes discarded by the OS
            env = {"PACKD_TRACE_OUT": os.devnull}
            info = kernel_info(
                binary, kernel, args.graph, args.scale, args.degree, args.seed, env=env
            )
        else:
            with tempfile.TemporaryDirectory(dir=trace_dir) as tmp:
                if trace_dir is not None:
                    env = {"PACKD_TRACE_OUT": str(Path(tmp) / "t.bin")}
                info = kernel_info(
                    binary, kernel, args.graph, args.scale, args.degree, args.seed, env=env
                )
                if env is not None:
                    loads = Path(env["PACKD_TRACE_OUT"]).stat().st_size // RECORD_DTYPE.itemsize
        best = min(best, float(info["roi_seconds"]))
    return best, loads


def bench_sancov(plain: Path, inst: Path, args: argparse.Namespace) -> None:
    """Per kernel: plain, hooks-inactive, /dev/null, traced-to-tmpfs and -disk ROI times."""
    shm = _fast_tmp_dir()
    disk = tempfile.gettempdir()
    print(
        f"\n== sancov: graph={args.graph} scale={args.scale} degree={args.degree} "
        f"(ROI seconds, min of {args.repeats}; tmpfs={shm}, disk={disk})"
    )
    header = (
        f"{'kernel':6} {'loads':>11} {'plain_s':>9} {'hooks_s':>9} {'x':>6} {'null_s':>8} {'x':>6} "
        f"{'traced_s':>9} {'x':>6} {'Mloads/s':>9} {'disk_s':>8} {'x':>6} {'py_total_s':>10}"
    )
    print(header)
    for kernel in KERNELS:
        t_plain, _ = roi_seconds(plain, kernel, args, None)
        # Instrumented but not tracing: the cost of the hook calls alone.
        t_hooks, _ = roi_seconds(inst, kernel, args, None)
        t_null, _ = roi_seconds(inst, kernel, args, os.devnull)
        t_shm, loads = roi_seconds(inst, kernel, args, shm)
        t_disk, _ = roi_seconds(inst, kernel, args, disk)
        t0 = time.perf_counter()
        stream = trace_kernel(inst, kernel, args.graph, args.scale, args.degree, args.seed)
        t_py = time.perf_counter() - t0
        assert len(stream) == loads, (len(stream), loads)
        del stream
        print(
            f"{kernel:6} {loads:11,d} {t_plain:9.4f} {t_hooks:9.4f} {t_hooks / t_plain:6.1f} "
            f"{t_null:8.4f} {t_null / t_plain:6.1f} "
            f"{t_shm:9.4f} {t_shm / t_plain:6.1f} {loads / t_shm / 1e6:9.1f} "
            f"{t_disk:8.4f} {t_disk / t_plain:6.1f} {t_py:10.3f}"
        )
    print(
        "x = slowdown vs plain; hooks = instrumented, not recording; null = recording, "
        "written to /dev/null;\ntraced = written to tmpfs (what trace_kernel does), "
        "disk = written under the temp dir;\npy_total_s = trace_kernel() wall time incl. graph "
        "build and reading the records"
    )


def bench_lackey(plain: Path, args: argparse.Namespace) -> None:
    """lackey: end-to-end speed, valgrind's own output rate, and the parser's rate."""
    scale = args.lackey_scale
    cmd = [str(plain), "--kernel", "bfs", "--graph", args.graph, "--scale", str(scale)]
    cmd += ["--degree", str(args.degree), "--seed", str(args.seed)]
    print(f"\n== lackey: bfs graph={args.graph} scale={scale} degree={args.degree}")
    for roi in (("roi_begin", "roi_end"), None):
        t0 = time.perf_counter()
        s = trace_command_lackey(cmd, roi_symbols=roi)
        dt = time.perf_counter() - t0
        what = "ROI only" if roi else "whole program"
        print(
            f"trace_command_lackey ({what}): {len(s):,d} loads, last instr_id "
            f"{int(s.instr_id[-1]):,d}, {dt:.2f} s, {len(s) / dt / 1e6:.3f} M loads/s, "
            f"{int(s.instr_id[-1]) / dt / 1e6:.2f} M instr/s"
        )
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "lackey.txt"
        t0 = time.perf_counter()
        subprocess.run(
            ["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={log}", *cmd],
            check=True,
            capture_output=True,
        )
        t_vg = time.perf_counter() - t0
        data = log.read_bytes()
    lines = data.count(b"\n")
    parser = _LackeyParser(None, None)
    t0 = time.perf_counter()
    chunk = 4 << 20
    pos = 0
    while pos < len(data):
        end = data.rfind(b"\n", pos, pos + chunk) + 1
        if end <= pos:
            end = len(data)
        parser.feed(data[pos:end])
        pos = end
    t_parse = time.perf_counter() - t0
    print(
        f"valgrind lackey to a file: {lines:,d} lines ({len(data) / 1e6:.0f} MB) in {t_vg:.2f} s "
        f"= {lines / t_vg / 1e6:.2f} M lines/s"
    )
    print(
        f"numpy chunk parser alone: {lines / t_parse / 1e6:.1f} M lines/s "
        f"({parser.n_loads:,d} loads)"
    )


def main(argv: list[str] | None = None) -> int:
    """Build both variants of graphkernels and print the benchmark tables."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=14)
    ap.add_argument("--degree", type=int, default=16)
    ap.add_argument("--graph", choices=("kron", "uniform"), default="kron")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lackey-scale", type=int, default=8)
    ap.add_argument("--no-lackey", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        plain, inst = Path(tmp) / "graphkernels", Path(tmp) / "graphkernels-sancov"
        meta = compile_kernel(KERNEL_DIR, plain, instrumented=False)
        compile_kernel(KERNEL_DIR, inst, instrumented=True)
        print(f"compiler: {meta['cc']}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}")
        bench_sancov(plain, inst, args)
        if not args.no_lackey:
            bench_lackey(plain, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
