"""Load tracing: the sancov runtime (ROI, determinism, limits, failures) and the lackey backend."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from packd.tracing import (
    LoadStream,
    TracingError,
    compile_kernel,
    decode_records,
    trace_command_lackey,
    trace_kernel,
)
from packd.tracing.sancov import _no_aslr_prefix
from tests.kernel_runs import kernel_answer

KERNEL_DIR = Path(__file__).resolve().parents[2] / "workflow" / "kernels"
KERNELS = ("bfs", "pr", "cc", "bc", "sssp")
# Functions whose code runs inside each kernel's ROI (static helpers may be inlined into them).
KERNEL_FUNCS = {
    "bfs": ("kernel_bfs", "bfs_top_down", "bfs_bottom_up"),
    "pr": ("kernel_pr",),
    "cc": ("kernel_cc",),
    "bc": ("kernel_bc",),
    "sssp": ("kernel_sssp", "vec_push"),
}
SANCOV = ["-fsanitize-coverage=func,inline-8bit-counters,trace-loads"]
TINY_FLAGS = ["-O1", "-fno-vectorize", "-fno-slp-vectorize", "-gdwarf-4", "-fno-pie"]
N_TINY = 1000

pytestmark = pytest.mark.skipif(
    shutil.which("clang") is None, reason="clang is not installed (needed for sancov tracing)"
)
needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind missing")

# A loop summing a[idx[i]] between the ROI markers: exactly 2 loads per iteration, at addresses
# the program reports, so both backends can be checked load by load.
TINY_C = r"""
#include <stdio.h>
#include <stdlib.h>
void roi_begin(void);
void roi_end(void);
int main(int argc, char **argv) {
    int n = %(n)d;
    int *idx = malloc(n * sizeof(int));
    long *a = malloc(n * sizeof(long));
    for (int i = 0; i < n; i++) { idx[i] = (int)((i * 7919L) %% n); a[i] = i; }
    const char *path = getenv("TINY_ADDR_OUT");
    if (path) { FILE *f = fopen(path, "w"); fprintf(f, "%%lu %%lu\n", (unsigned long)idx,
                (unsigned long)a); fclose(f); }
    roi_begin();
    long s = 0;
    for (int i = 0; i < n; i++) s += a[idx[i]];
    roi_end();
    printf("%%ld\n", s);
    return s == (long)n * (n - 1) / 2 ? 0 : 1;
}
"""

CRASH_C = r"""
#include <stdlib.h>
#include <string.h>
void roi_begin(void);
void roi_end(void);
int main(int argc, char **argv) {
    roi_begin();
    if (getenv("CRASH_EXIT")) return atoi(getenv("CRASH_EXIT"));
    volatile int *p = (int *)(argc > 1000 ? argv : 0);
    return *p;
}
"""


def _cc(*args: str | Path) -> None:
    subprocess.run(["clang", *map(str, args)], check=True, capture_output=True)


def build_small(src: str, out: Path, instrumented: bool) -> Path:
    """Compile a test C program with the sancov runtime or the no-op ROI markers."""
    c = out.with_suffix(".c")
    c.write_text(src)
    obj = out.with_suffix(".o")
    rt = out.with_suffix(".rt.o")
    runtime = KERNEL_DIR / ("sancov_runtime.c" if instrumented else "roi_noop.c")
    _cc(*TINY_FLAGS, "-c", "-o", rt, runtime)
    _cc(*TINY_FLAGS, *(SANCOV if instrumented else []), "-c", "-o", obj, c)
    _cc("-no-pie", "-o", out, obj, rt, "-lpthread")
    return out


@pytest.fixture(scope="session")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Instrumented and plain graphkernels plus the small test programs, built once."""
    d = tmp_path_factory.mktemp("tracing")
    out = {
        "sancov": d / "graphkernels-sancov",
        "plain": d / "graphkernels",
    }
    compile_kernel(KERNEL_DIR, out["sancov"], instrumented=True)
    compile_kernel(KERNEL_DIR, out["plain"], instrumented=False)
    out["tiny_sancov"] = build_small(TINY_C % {"n": N_TINY}, d / "tiny_sancov", True)
    out["tiny_plain"] = build_small(TINY_C % {"n": N_TINY}, d / "tiny_plain", False)
    out["crash_sancov"] = build_small(CRASH_C, d / "crash_sancov", True)
    out["crash_plain"] = build_small(CRASH_C, d / "crash_plain", False)
    return out


def function_ranges(binary: Path) -> dict[str, tuple[int, int]]:
    """[start, end) code addresses of the binary's functions, from nm -S."""
    proc = subprocess.run(
        ["nm", "-S", "--defined-only", str(binary)], capture_output=True, text=True, check=True
    )
    ranges = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "Tt":
            start = int(parts[0], 16)
            ranges[parts[3]] = (start, start + int(parts[1], 16))
    return ranges


def in_ranges(pcs: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Mask of PCs inside any of the ranges."""
    mask = np.zeros(pcs.shape, dtype=bool)
    for lo, hi in ranges:
        mask |= (pcs >= lo) & (pcs < hi)
    return mask


def check_stream(s: LoadStream, kind: str) -> None:
    """Column types and lengths of a LoadStream."""
    assert s.instr_id_kind == kind
    for col in (s.instr_id, s.pc, s.addr):
        assert col.dtype == np.uint64
        assert col.shape == (len(s),)
    assert (np.diff(s.instr_id.astype(np.int64)) >= 0).all()


# ---------------------------------------------------------------------------------- sancov


@pytest.mark.parametrize("kernel", KERNELS)
def test_sancov_loads_only_in_roi(bins: dict[str, Path], kernel: str) -> None:
    s = trace_kernel(bins["sancov"], kernel, "kron", 8, 8, 3)
    check_stream(s, "load_ordinal")
    np.testing.assert_array_equal(s.instr_id, np.arange(len(s), dtype=np.uint64))
    assert len(s) > 1000
    # Every recorded load site is in the kernel's code, none in graph construction; main only
    # reads the kernel's arguments (e.g. sources[0]) between roi_begin() and the call.
    ranges = function_ranges(bins["sancov"])
    allowed = [ranges[f] for f in KERNEL_FUNCS[kernel] if f in ranges]
    assert allowed, f"none of {KERNEL_FUNCS[kernel]} found in the binary"
    in_main = in_ranges(s.pc, [ranges["main"]])
    assert in_main.sum() <= 4
    assert in_ranges(s.pc[~in_main], allowed).all()
    assert "build_graph" not in ranges or not in_ranges(s.pc, [ranges["build_graph"]]).any()


def test_sancov_much_less_than_whole_program(bins: dict[str, Path]) -> None:
    s = trace_kernel(bins["sancov"], "bfs", "kron", 7, 8, 3)
    cmd = [str(bins["plain"]), "--kernel", "bfs", "--graph", "kron", "--scale", "7"]
    whole = trace_command_lackey([*cmd, "--degree", "8", "--seed", "3"])
    assert 0 < len(s) < len(whole) / 10


def test_sancov_addresses_do_not_depend_on_environment_or_folder(
    bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A SLURM node's variables or another working folder must not move the stack."""
    if not _no_aslr_prefix():
        pytest.skip("setarch -R is unavailable: addresses move with ASLR anyway")
    here = trace_kernel(bins["sancov"], "pr", "kron", 8, 8, 5)
    monkeypatch.setenv("SLURM_JOB_ID", "1234567" * 30)
    monkeypatch.chdir(tmp_path)
    there = trace_kernel(bins["sancov"].resolve(), "pr", "kron", 8, 8, 5)
    np.testing.assert_array_equal(here.addr, there.addr)


def test_sancov_deterministic(bins: dict[str, Path]) -> None:
    a = trace_kernel(bins["sancov"], "sssp", "kron", 8, 8, 5)
    b = trace_kernel(bins["sancov"], "sssp", "kron", 8, 8, 5)
    # Non-PIE: code addresses are fixed even with ASLR.
    np.testing.assert_array_equal(a.pc, b.pc)
    if _no_aslr_prefix():
        np.testing.assert_array_equal(a.addr, b.addr)
    else:  # heap/stack move with ASLR: compare the access pattern within each page instead
        np.testing.assert_array_equal(a.addr & 0xFFF, b.addr & 0xFFF)
    c = trace_kernel(bins["sancov"], "sssp", "kron", 8, 8, 6)
    assert len(c) != len(a) or not np.array_equal(c.addr, a.addr)


def test_sancov_max_loads(bins: dict[str, Path]) -> None:
    full = trace_kernel(bins["sancov"], "pr", "kron", 8, 8, 3)
    part = trace_kernel(bins["sancov"], "pr", "kron", 8, 8, 3, max_loads=1234)
    assert len(full) > 1234
    assert len(part) == 1234
    np.testing.assert_array_equal(part.pc, full.pc[:1234])
    # A prefix, stack addresses included: the limit does not change the environment's size.
    if _no_aslr_prefix():
        np.testing.assert_array_equal(part.addr, full.addr[:1234])
    with pytest.raises(ValueError):
        trace_kernel(bins["sancov"], "pr", "kron", 8, 8, 3, max_loads=0)


def test_inlined_and_called_hooks_record_the_same_loads(
    bins: dict[str, Path], tmp_path: Path
) -> None:
    """The inlined build (bitcode linked, hooks in every load site) against plain hook calls."""
    called = tmp_path / "graphkernels-called"
    meta = compile_kernel(KERNEL_DIR, called, instrumented=True, inline_hooks=False)
    assert meta["instrumentation"].endswith("hooks called")
    ranges = function_ranges(bins["sancov"])
    for kernel in ("bfs", "sssp"):
        a = trace_kernel(bins["sancov"], kernel, "kron", 8, 8, 2)
        b = trace_kernel(called, kernel, "kron", 8, 8, 2)
        assert len(a) == len(b) > 1000
        # The binary's own globals move with its code size (by one offset); the rest is equal.
        static = a.addr < (1 << 32)
        np.testing.assert_array_equal(static, b.addr < (1 << 32))
        assert (
            len(np.unique(a.addr[static].astype(np.int64) - b.addr[static].astype(np.int64))) <= 1
        )
        if _no_aslr_prefix():
            np.testing.assert_array_equal(a.addr[~static], b.addr[~static])
        # Inlined, a site is an address inside the kernel's own code.
        funcs = [ranges[f] for f in (*KERNEL_FUNCS[kernel], "main") if f in ranges]
        assert in_ranges(a.pc, funcs).all()


def test_sancov_under_an_address_space_cap(bins: dict[str, Path], tmp_path: Path) -> None:
    """With ulimit -v (as on some clusters) a load limit still traces; no limit fails loudly."""
    import resource

    def cap_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    out = tmp_path / "t.bin"
    cmd = [str(bins["sancov"]), "--kernel", "pr", "--graph", "kron", "--scale", "8"]
    cmd += ["--degree", "8", "--seed", "1"]
    env = {"PACKD_TRACE_OUT": str(out), "PACKD_MAX_LOADS": "500"}
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=cap_address_space)
    assert ok.returncode == 0, ok.stderr
    assert out.stat().st_size == 500 * 8 and "trace_records=500" in ok.stderr
    env["PACKD_MAX_LOADS"] = "0"
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=cap_address_space)
    assert bad.returncode == 3
    assert "cannot size or map the trace file" in bad.stderr


def test_failed_inlining_falls_back_to_called_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unusable llvm-link (say, of another LLVM version) costs speed, not the trace."""
    from packd.tracing import sancov

    monkeypatch.setattr(sancov, "_llvm_link", lambda cc_path: "/bin/false")
    binary = tmp_path / "graphkernels-sancov"
    meta = compile_kernel(KERNEL_DIR, binary, instrumented=True)
    assert "hooks called (inlining failed" in meta["instrumentation"]
    assert len(trace_kernel(binary, "bfs", "kron", 6, 4, 1)) > 100


@pytest.mark.parametrize("base", [0x400000, 0x555555554000 + 0x1F000])
def test_decode_records_round_trip(base: int) -> None:
    """Records keep the PC's low 17 bits; any PC in [base, base + 128 KiB) comes back."""
    pcs = np.array([base + 0x1234, base, base + 0x1FFFF, base + 0x10000], dtype=np.uint64)
    addrs = np.array([0x7FFFFFFFE000, 0x10, (1 << 47) - 1, 0x4102A0], dtype=np.uint64)
    records = (pcs << np.uint64(47)) | addrs  # what the runtime stores (high bits shift out)
    pc, addr = decode_records(records, base)
    np.testing.assert_array_equal(pc, pcs)
    np.testing.assert_array_equal(addr, addrs)


def test_sancov_exact_loads_of_small_loop(
    bins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addr_file = tmp_path / "addrs.txt"
    # trace_kernel passes graphkernels' arguments; the small program ignores them.
    s = trace_kernel(
        bins["tiny_sancov"], "bfs", "kron", 4, 4, 1, extra_env={"TINY_ADDR_OUT": str(addr_file)}
    )
    idx_base, a_base = map(int, addr_file.read_text().split())
    perm = (np.arange(N_TINY, dtype=np.int64) * 7919) % N_TINY
    assert len(s) == 2 * N_TINY
    expected = np.empty(2 * N_TINY, dtype=np.uint64)
    expected[0::2] = idx_base + 4 * np.arange(N_TINY)
    expected[1::2] = a_base + 8 * perm
    np.testing.assert_array_equal(s.addr, expected)
    assert len(np.unique(s.pc)) == 2  # two load sites


def test_sancov_failures(bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # Bad arguments: graphkernels exits 2 with its usage.
    with pytest.raises(TracingError) as exc:
        trace_kernel(bins["sancov"], "bfs", "kron", 99, 8, 1)
    msg = str(exc.value)
    assert "graphkernels-sancov" in msg and "exit code 2" in msg and "usage:" in msg
    # A crash (SIGSEGV).
    with pytest.raises(TracingError) as exc:
        trace_kernel(bins["crash_sancov"], "bfs", "kron", 4, 4, 1)
    assert "crash_sancov" in str(exc.value) and "SIGSEGV" in str(exc.value)
    # A non-zero exit.
    with pytest.raises(TracingError, match="exit code 3"):
        trace_kernel(bins["crash_sancov"], "bfs", "kron", 4, 4, 1, extra_env={"CRASH_EXIT": "3"})
    # An uninstrumented binary records nothing.
    with pytest.raises(TracingError, match="no loads recorded"):
        trace_kernel(bins["plain"], "bfs", "kron", 6, 4, 1)
    with pytest.raises(ValueError):
        trace_kernel(bins["sancov"], "dfs", "kron", 6, 4, 1)


def test_compile_missing_compiler(tmp_path: Path) -> None:
    with pytest.raises(TracingError, match="not found"):
        compile_kernel(KERNEL_DIR, tmp_path / "x", instrumented=True, cc="no-such-clang-99")


def test_compile_returns_versions(tmp_path: Path) -> None:
    meta = compile_kernel(KERNEL_DIR, tmp_path / "gk", instrumented=True)
    assert "clang" in meta["cc"]
    assert "trace-loads" in meta["cflags"]
    assert (tmp_path / "gk").stat().st_mode & 0o111


# ---------------------------------------------------------------------------------- lackey


@needs_valgrind
def test_lackey_small_loop_roi(
    bins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addr_file = tmp_path / "addrs.txt"
    s = trace_command_lackey(
        [str(bins["tiny_plain"])],
        roi_symbols=("roi_begin", "roi_end"),
        env={"TINY_ADDR_OUT": str(addr_file)},
    )
    check_stream(s, "instruction_count")
    idx_base, a_base = map(int, addr_file.read_text().split())
    perm = (np.arange(N_TINY, dtype=np.int64) * 7919) % N_TINY
    in_idx = (s.addr >= idx_base) & (s.addr < idx_base + 4 * N_TINY)
    in_a = (s.addr >= a_base) & (s.addr < a_base + 8 * N_TINY)
    np.testing.assert_array_equal(s.addr[in_idx], idx_base + 4 * np.arange(N_TINY))
    np.testing.assert_array_equal(s.addr[in_a], a_base + 8 * perm)
    # Besides the loop's loads, only a few (roi_begin's `ret` reads the stack) are in the ROI.
    assert 2 * N_TINY <= len(s) <= 2 * N_TINY + 8
    # A true instruction count: each iteration executes several instructions.
    loop_ids = s.instr_id[in_idx].astype(np.int64)
    assert (np.diff(loop_ids) >= 3).all()
    # The PC of each load is in main's code.
    ranges = function_ranges(bins["tiny_plain"])
    assert in_ranges(s.pc[in_idx | in_a], [ranges["main"]]).all()


@needs_valgrind
def test_lackey_trace_does_not_depend_on_caller_environment(
    bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The program sees a fixed environment (plus env=), so its stack does not move.

    A ROI trace is identical run to run. A whole-program trace differs in the addresses of at
    most three loads of the dynamic loader's start-up: its strcspn (parsing valgrind's
    LD_PRELOAD) reads up to three bytes past the string's end, and there the client stack holds
    the 16 AT_RANDOM bytes that the kernel draws anew for every exec. Their values index a table,
    so those loads' addresses change with every run, on any machine.
    """
    folder = bins["tiny_plain"].parent
    command = [f"./{bins['tiny_plain'].name}"]
    roi = ("roi_begin", "roi_end")
    here_roi = trace_command_lackey(command, roi_symbols=roi, cwd=folder)
    here = trace_command_lackey(command, max_loads=3000, cwd=folder)
    monkeypatch.setenv("SLURM_JOB_ID", "1234567" * 30)
    monkeypatch.chdir(tmp_path)
    there_roi = trace_command_lackey(command, roi_symbols=roi, cwd=folder)
    there = trace_command_lackey(command, max_loads=3000, cwd=folder)
    for field in ("addr", "pc", "instr_id"):
        np.testing.assert_array_equal(getattr(here_roi, field), getattr(there_roi, field))
    np.testing.assert_array_equal(here.pc, there.pc)
    np.testing.assert_array_equal(here.instr_id, there.instr_id)
    moved = np.flatnonzero(here.addr != there.addr)
    assert len(moved) <= 3
    # Those loads are the loader's, not the program's: outside every function of the binary.
    ranges = function_ranges(bins["tiny_plain"])
    assert not in_ranges(here.pc[moved], list(ranges.values())).any()
    # The app's own variables do reach it: TINY_ADDR_OUT makes it write its array addresses.
    addr_file = tmp_path / "addrs.txt"
    trace_command_lackey(command, cwd=folder, env={"TINY_ADDR_OUT": str(addr_file)})
    assert len(addr_file.read_text().split()) == 2


@needs_valgrind
def test_lackey_whole_program_and_max_loads(bins: dict[str, Path]) -> None:
    whole = trace_command_lackey(str(bins["tiny_plain"]))
    roi = trace_command_lackey([str(bins["tiny_plain"])], roi_symbols=("roi_begin", "roi_end"))
    assert len(whole) > len(roi) + 10_000  # loader and libc loads too
    part = trace_command_lackey([str(bins["tiny_plain"])], max_loads=100)
    assert len(part) == 100
    np.testing.assert_array_equal(part.addr, whole.addr[:100])
    np.testing.assert_array_equal(part.instr_id, whole.instr_id[:100])
    # Unknown symbols stop the trace: a whole-program trace is not what was asked for.
    with pytest.raises(TracingError, match="'nope' not found"):
        trace_command_lackey([str(bins["tiny_plain"])], roi_symbols=("nope", "roi_end"))


@needs_valgrind
def test_lackey_failures(bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TracingError) as exc:
        trace_command_lackey([str(bins["crash_plain"])])
    assert "crash_plain" in str(exc.value) and "SIGSEGV" in str(exc.value)
    assert "Process terminating with default action of signal 11" in str(exc.value)
    with pytest.raises(TracingError, match="exit code 4"):
        trace_command_lackey([str(bins["crash_plain"])], env={"CRASH_EXIT": "4"})


@needs_valgrind
def test_lackey_graph_kernel_roi(bins: dict[str, Path]) -> None:
    cmd = [str(bins["plain"]), "--kernel", "cc", "--graph", "uniform", "--scale", "6"]
    cmd += ["--degree", "4", "--seed", "2"]
    s = trace_command_lackey(cmd, roi_symbols=("roi_begin", "roi_end"))
    ranges = function_ranges(bins["plain"])
    # Mostly the kernel's own loads; a few from malloc/free inside the ROI.
    assert in_ranges(s.pc, [ranges["kernel_cc"]]).mean() > 0.9
    # Graph construction (inlined into main) is outside the ROI.
    assert in_ranges(s.pc, [ranges["main"]]).sum() <= 8


@pytest.mark.parametrize("kernel", ["bfs", "bc", "cc"])
def test_trials_repeat_the_kernel_in_the_roi(bins: dict[str, Path], kernel: str) -> None:
    """--trials T runs the kernel T times (from new sources): about T times the loads."""
    one = trace_kernel(bins["sancov"], kernel, "kron", 9, 8, 5)
    three = trace_kernel(bins["sancov"], kernel, "kron", 9, 8, 5, extra_args=("--trials", "3"))
    assert set(np.unique(one.pc)) <= set(np.unique(three.pc))  # later trials may add more
    if kernel == "cc":  # no source: every trial does exactly the same work
        assert len(three) == pytest.approx(3 * len(one), rel=0.01)
    else:  # new sources reach other parts of the graph, so the count differs per trial
        assert 1.5 * len(one) < len(three) < 6 * len(one)
    np.testing.assert_array_equal(three.pc[: len(one) // 2], one.pc[: len(one) // 2])


def test_trials_keep_the_first_trials_answer(bins: dict[str, Path]) -> None:
    first = kernel_answer(bins["plain"], "bfs", "kron", 9, 8, 5)
    repeated = kernel_answer(bins["plain"], "bfs", "kron", 9, 8, 5, extra_args=("--trials", "4"))
    np.testing.assert_array_equal(first, repeated)
