"""Benchmark of load tracing: uninstrumented vs sancov-traced graph kernels, and lackey's speed.

ROI times are the program's own seconds for the kernel (not graph construction), min of
--repeats runs; "traced" includes the hooks and storing every record in the trace file.
Whole-program times are wall seconds of the uninstrumented program and of trace_kernel().
The lackey ROI cost: seconds per million guest instructions outside and inside a ROI, from a
small program whose phase before the ROI and whose ROI have sizes given on its command line.

    python benchmarks_scripts/bench_tracing.py [--scale 14] [--degree 16] [--trials 4]
    python benchmarks_scripts/bench_tracing.py --no-sancov   # lackey only
    ... --markdown docs/benchmarks/tracing.md       # also write the output as a page
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from packd.benchpage import printed_copy, write_page
from packd.tracing import (
    KERNELS,
    RECORD_DTYPE,
    compile_kernel,
    kernel_arguments,
    trace_command_lackey,
    trace_kernel,
    valgrind_version,
)
from packd.tracing.lackey_parser import _LackeyParser
from packd.tracing.sancov import _fast_tmp_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.kernel_runs
from tests.kernel_runs import kernel_info  # noqa: E402

KERNEL_DIR = Path(__file__).resolve().parents[1] / "workflow" / "kernels"
PAGE_NOTE = (
    "sancov: the traced graph kernels' slow-down against the uninstrumented ones (the legend is "
    "under its table); lackey: its speed on a small graph kernel. lackey ROI cost: seconds per "
    "million guest instructions of a small program whose phase before the ROI (`pre`) and whose "
    "ROI (`roi`) have the sizes given on its command line; `base` is both phases tiny, `whole` "
    "traces `pre` without a ROI. wall_s is the tracer's wall time, vg_cpu_s valgrind's CPU time, "
    "py_cpu_s the tracer's own (Python) CPU time. See docs/tracing.md for how to read it."
)


def trial_args(args: argparse.Namespace) -> list[str]:
    """graphkernels' --trials option, when more than one trial is asked for."""
    return ["--trials", str(args.trials)] if args.trials > 1 else []


def roi_seconds(
    binary: Path,
    kernel: str,
    args: argparse.Namespace,
    trace_dir: str | None,
    max_loads: int = 0,
) -> tuple[float, int]:
    """Min ROI seconds over the repeats, and the number of loads recorded (0 if not traced).

    max_loads > 0 bounds the trace, so the runtime faults the file's pages in before the ROI
    (as the workflow's tracing.max_loads does); 0 leaves that to its helper thread.
    """
    best, loads = float("inf"), 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=trace_dir) as tmp:
            env = None
            if trace_dir is not None:
                env = {"PACKD_TRACE_OUT": str(Path(tmp) / "t.bin")}
                env["PACKD_MAX_LOADS"] = f"{max_loads:020d}"
            info = kernel_info(
                binary,
                kernel,
                args.graph,
                args.scale,
                args.degree,
                args.seed,
                extra_args=trial_args(args),
                env=env,
            )
            if env is not None:
                loads = Path(env["PACKD_TRACE_OUT"]).stat().st_size // RECORD_DTYPE.itemsize
        best = min(best, float(info["roi_seconds"]))
    return best, loads


def wall_seconds(run, *run_args, repeats: int = 3, **run_kwargs) -> float:
    """Min wall seconds of run(*run_args, **run_kwargs) over the repeats."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(*run_args, **run_kwargs)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_sancov(plain: Path, inlined: Path, called: Path, args: argparse.Namespace) -> None:
    """Per kernel: ROI seconds plain, hooks inactive, traced (inlined / called hooks, tmpfs /
    disk), and whole-program wall seconds plain vs trace_kernel()."""
    shm = _fast_tmp_dir()
    disk = tempfile.gettempdir()
    print(
        f"\n== sancov: graph={args.graph} scale={args.scale} degree={args.degree} "
        f"trials={args.trials} (seconds, min of {args.repeats}; tmpfs={shm}, disk={disk})"
    )
    print(
        f"{'kernel':6} {'loads':>11} {'roi_plain':>9} {'hooks':>6} {'traced':>9} {'x':>5} "
        f"{'Mloads/s':>8} {'called_x':>8} {'disk_x':>6} {'nolimit_x':>9} | "
        f"{'run_plain':>9} {'run_traced':>10} {'x':>5}"
    )
    extra = trial_args(args)
    for kernel in KERNELS:
        t_plain, _ = roi_seconds(plain, kernel, args, None)
        # Instrumented but not tracing: the cost of the inactive hooks alone.
        t_hooks, _ = roi_seconds(inlined, kernel, args, None)
        t_open, loads = roi_seconds(inlined, kernel, args, shm)
        t_shm, _ = roi_seconds(inlined, kernel, args, shm, max_loads=loads)
        t_called, _ = roi_seconds(called, kernel, args, shm, max_loads=loads)
        t_disk, _ = roi_seconds(inlined, kernel, args, disk, max_loads=loads)
        graph = (args.graph, args.scale, args.degree, args.seed)
        cmd = [str(plain), *kernel_arguments(kernel, *graph), *extra]
        w_plain = wall_seconds(subprocess.run, cmd, check=True, capture_output=True)
        w_traced = wall_seconds(trace_kernel, inlined, kernel, *graph, extra_args=extra)
        print(
            f"{kernel:6} {loads:11,d} {t_plain:9.4f} {t_hooks / t_plain:6.1f} {t_shm:9.4f} "
            f"{t_shm / t_plain:5.1f} {loads / t_shm / 1e6:8.0f} {t_called / t_plain:8.1f} "
            f"{t_disk / t_plain:6.1f} {t_open / t_plain:9.1f} | "
            f"{w_plain:9.3f} {w_traced:10.3f} {w_traced / w_plain:5.1f}"
        )
    print(
        "roi_plain = uninstrumented kernel (ROI) seconds; the other ROI columns are slowdowns x\n"
        "against it: hooks = instrumented, not recording; traced = recorded to tmpfs with inlined\n"
        "hooks and a load limit (what the workflow does: tracing.max_loads; here the limit is\n"
        "the trace's length); called_x = the same with called hooks (no llvm-link); disk_x =\n"
        "recorded under the temp dir; nolimit_x = no load limit, so the file's pages are faulted\n"
        "in during the ROI. run_plain = the uninstrumented program's wall\n"
        "seconds (graph build + kernel); run_traced = trace_kernel() (graph build, traced kernel,\n"
        "records decoded in Python)"
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
            [
                "valgrind",
                "--tool=lackey",
                "--basic-counts=no",
                "--trace-mem=yes",
                f"--log-file={log}",
            ]
            + cmd,
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


# A gather loop before the ROI (argv[1] iterations) and in it (argv[2] iterations): the same
# code, so the two phases differ only in whether their loads are recorded.
PHASES_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) void roi_begin(void) { __asm__ volatile(""); }
__attribute__((noinline)) void roi_end(void) { __asm__ volatile(""); }
__attribute__((noinline)) long gather(const long *a, const int *idx, long iters) {
    long s = 0;
    for (long i = 0; i < iters; i++) s += a[idx[i & 4095]];
    return s;
}
int main(int argc, char **argv) {
    int *idx = malloc(4096 * sizeof(int));
    long *a = malloc(4096 * sizeof(long));
    for (int i = 0; i < 4096; i++) { idx[i] = (i * 7919) & 4095; a[i] = i; }
    long s = gather(a, idx, atol(argv[1]));
    roi_begin();
    s += gather(a, idx, atol(argv[2]));
    roi_end();
    printf("%ld\n", s);
    return 0;
}
"""


def build_phases(folder: Path) -> Path:
    """Compile the two-phase program (non-PIE, -O1)."""
    src = folder / "phases.c"
    src.write_text(PHASES_C)
    binary = folder / "phases"
    subprocess.run(["cc", "-O1", "-fno-pie", "-no-pie", "-o", binary, src], check=True)
    return binary


def timed_trace(
    tracer: Callable[..., object], command: list[str], roi: tuple[str, str] | None, repeats: int
) -> tuple[float, float, float, object]:
    """Min over the repeats of (wall s, valgrind CPU s, this process's CPU s), and the stream."""
    best = (float("inf"), 0.0, 0.0)
    stream = None
    for _ in range(repeats):
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = time.process_time(), time.perf_counter()
        stream = tracer(command, roi_symbols=roi)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
        best = min(best, (wall, child, cpu))
    return (*best, stream)


def bench_lackey_roi_cost(
    args: argparse.Namespace, tracer: Callable[..., object] = trace_command_lackey, label: str = ""
) -> None:
    """Seconds per million guest instructions outside the ROI, inside it, and unrestricted."""
    small, pre, roi_iters = 1000, args.lackey_pre, args.lackey_roi
    with tempfile.TemporaryDirectory(prefix="bench-lackey-") as tmp:
        binary = str(build_phases(Path(tmp)))
        roi = ("roi_begin", "roi_end")
        # Instruction counts from the current tracer's metadata (the same program, the same run).
        runs = {
            "base": ([binary, str(small), str(small)], roi),
            "pre": ([binary, str(pre), str(small)], roi),
            "roi": ([binary, str(small), str(roi_iters)], roi),
            "whole": ([binary, str(pre), str(small)], None),
        }
        counts = {
            name: trace_command_lackey(cmd, roi_symbols=r).metadata["instructions_executed"]
            for name, (cmd, r) in runs.items()
        }
        times = {name: timed_trace(tracer, cmd, r, args.repeats) for name, (cmd, r) in runs.items()}
        native = wall_seconds(subprocess.run, runs["pre"][0], check=True, capture_output=True)
        vg = shutil.which("valgrind")
        nulgrind = wall_seconds(
            subprocess.run, [vg, "--tool=none", *runs["pre"][0]], check=True, capture_output=True
        )
    print(
        f"\n== lackey ROI cost {label}({valgrind_version()}; phases: before the ROI {pre:,d} "
        f"iterations, in the ROI {roi_iters:,d}; min of {args.repeats})"
    )
    print(f"{'run':6} {'Minstr':>7} {'loads':>9} {'wall_s':>7} {'vg_cpu_s':>8} {'py_cpu_s':>8}")
    for name, (wall, child, cpu, stream) in times.items():
        print(
            f"{name:6} {counts[name] / 1e6:7.2f} {len(stream):9,d} {wall:7.2f} {child:8.2f} "
            f"{cpu:8.2f}"
        )

    def per_minstr(run: str, column: int) -> float:
        """Extra seconds per million extra instructions of a run against the base run."""
        extra = counts[run] - counts["base"]
        return (times[run][column] - times["base"][column]) / (extra / 1e6)

    whole = times["whole"]
    print(
        f"s per M instructions outside the ROI: wall {per_minstr('pre', 0):.3f}, valgrind CPU "
        f"{per_minstr('pre', 1):.3f}, parser CPU {per_minstr('pre', 2):.3f}\n"
        f"s per M instructions inside the ROI:  wall {per_minstr('roi', 0):.3f}, valgrind CPU "
        f"{per_minstr('roi', 1):.3f}, parser CPU {per_minstr('roi', 2):.3f}\n"
        f"s per M instructions, no ROI (whole): wall {whole[0] / counts['whole'] * 1e6:.3f}, "
        f"valgrind CPU {whole[1] / counts['whole'] * 1e6:.3f}, parser CPU "
        f"{whole[2] / counts['whole'] * 1e6:.3f}\n"
        f"the 'pre' program natively: {native:.3f} s; under valgrind --tool=none: {nulgrind:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    """Build both variants of graphkernels and print the benchmark tables."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=14)
    ap.add_argument("--degree", type=int, default=16)
    ap.add_argument("--graph", choices=("kron", "uniform"), default="kron")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--trials", type=int, default=4, help="kernel runs in the ROI (GAP's -n), as config.yaml"
    )
    ap.add_argument("--lackey-scale", type=int, default=8)
    ap.add_argument("--lackey-pre", type=int, default=400_000, help="iterations before the ROI")
    ap.add_argument("--lackey-roi", type=int, default=400_000, help="iterations in the ROI")
    ap.add_argument("--no-lackey", action="store_true")
    ap.add_argument("--no-sancov", action="store_true")
    ap.add_argument("--markdown", type=Path, help="also write the output as a Markdown page")
    args = ap.parse_args(argv)
    with printed_copy() as printed:
        run_benchmarks(args)
    if args.markdown:
        write_page(args.markdown, "Load tracing cost", PAGE_NOTE, printed.getvalue())
    return 0


def run_benchmarks(args: argparse.Namespace) -> None:
    """The benchmarks args asks for, printed as they finish."""
    if args.no_sancov:
        bench_lackey_roi_cost(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        plain = Path(tmp) / "graphkernels"
        inlined, called = Path(tmp) / "graphkernels-sancov", Path(tmp) / "graphkernels-called"
        meta = compile_kernel(KERNEL_DIR, plain, instrumented=False)
        inst_meta = compile_kernel(KERNEL_DIR, inlined, instrumented=True)
        compile_kernel(KERNEL_DIR, called, instrumented=True, inline_hooks=False)
        print(
            f"compiler: {meta['cc']}; tracer build: {inst_meta['instrumentation']}; "
            f"cpus: {os.cpu_count()}; python {sys.version.split()[0]}"
        )
        bench_sancov(plain, inlined, called, args)
        if not args.no_lackey:
            bench_lackey(plain, args)
            bench_lackey_roi_cost(args)


if __name__ == "__main__":
    raise SystemExit(main())
