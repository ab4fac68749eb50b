"""The lackey tracer's ROI on C++ programs: PIE or not, mangled or demangled names, inlined
functions, OpenMP regions, the program's own errors, and the metadata a trace records."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from packd.plan import command_program_path
from packd.tracing import (
    TracingError,
    function_symbols,
    lackey,
    resolve_command,
    trace_command_lackey,
)
from packd.tracing.lackey_parser import _LackeyParser

N_ELEMENTS = 500
# A gather loop (two loads per element) in a function that really runs, and the traps: an
# overload (an ambiguous short name), a function inlined everywhere that keeps its symbol, a
# static inline one with no symbol, an OpenMP loop, and an exit with the cause on stderr.
ROI_CPP = r"""
#include <cstdio>
#include <cstdlib>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __clang__
#define CALLED __attribute__((noinline))
#else
#define CALLED __attribute__((noipa))  // no clone with constant arguments: the symbol runs
#endif
namespace roi {
CALLED long gather(const long *values, const int *index, int n) {
    long total = 0;
    for (int i = 0; i < n; i++) total += values[index[i]];
    return total;
}
CALLED long gather(const double *values, const int *index, int n) {
    double total = 0;
    for (int i = 0; i < n; i++) total += values[index[i]];
    return (long)total;
}
CALLED void finished() { asm volatile(""); }
CALLED void never_called_here() { asm volatile(""); }
__attribute__((always_inline)) long scaled(const long *values) { return 3 * values[1]; }
static inline __attribute__((always_inline)) long twice(long x) { return 2 * x; }
#ifdef _OPENMP
CALLED long parallel_sum(const long *values, int n) {
    long total = 0;
#pragma omp parallel for reduction(+ : total)
    for (int i = 0; i < n; i++) total += values[i];
    return total;
}
CALLED void parallel_done() { asm volatile(""); }
#endif
}  // namespace roi
int main(int argc, char **argv) {
    int n = %(n)d;
    int *index = (int *)malloc(n * sizeof(int));
    long *values = (long *)malloc(n * sizeof(long));
    for (int i = 0; i < n; i++) { index[i] = (int)((i * 7919L) %% n); values[i] = i; }
    if (const char *input = getenv("FAIL_READING")) {
        fprintf(stderr, "error: cannot read graph %%s\n", input);
        return 7;
    }
    int threads = 0;
    long total = roi::gather(values, index, n);
    if (argc > 1) { roi::never_called_here(); total += roi::gather((double *)values, index, n); }
    roi::finished();
    total = roi::twice(total) + roi::scaled(values);
#ifdef _OPENMP
    total += roi::parallel_sum(values, n);
    roi::parallel_done();
    threads = omp_get_max_threads();
#endif
    if (const char *path = getenv("ROI_ADDR_OUT")) {
        FILE *f = fopen(path, "w");
        fprintf(f, "%%lu %%lu %%d\n", (unsigned long)index, (unsigned long)values, threads);
        fclose(f);
    }
    printf("%%ld\n", total);
    return 0;
}
"""
GATHER = "roi::gather(long const*, int const*, int)"
GATHER_MANGLED = "_ZN3roi6gatherEPKlPKii"
ROI = (GATHER, "roi::finished")

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind missing")
COMPILERS = [c for c in ("g++", "clang++") if shutil.which(c)]


def build(tmp: Path, compiler: str, pie: bool, openmp: bool = False) -> Path | None:
    """Compile ROI_CPP; None when the toolchain cannot (e.g. no OpenMP runtime)."""
    src = tmp / "roi.cpp"
    src.write_text(ROI_CPP % {"n": N_ELEMENTS})
    name = f"roi-{compiler.rstrip('+')}-{'pie' if pie else 'nopie'}{'-omp' if openmp else ''}"
    out = tmp / name
    # No vectorising: one load per array element, so the loads can be checked one by one.
    flags = ["-O1", "-fno-vectorize" if "clang" in compiler else "-fno-tree-vectorize"]
    flags += ["-fPIE", "-pie"] if pie else ["-fno-pie", "-no-pie"]
    flags += ["-fopenmp"] if openmp else []
    flags += ["-Wl,--as-needed"]  # no libstdc++ start-up to trace: the program needs none
    proc = subprocess.run([compiler, *flags, "-o", out, src], capture_output=True, text=True)
    if proc.returncode != 0:
        if openmp:
            return None
        raise AssertionError(proc.stderr)
    return out


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Path]:
    """The test program built by each compiler, PIE and not."""
    if not COMPILERS:
        pytest.skip("no C++ compiler")
    tmp = tmp_path_factory.mktemp("lackey-roi")
    return {(c, pie): build(tmp, c, pie) for c in COMPILERS for pie in (False, True)}


def function_start(binary: Path, mangled: str) -> int:
    """Link-time address of a function."""
    return next(s.address for s in function_symbols(binary) if s.name == mangled)


def gather_loads(binary: Path, tmp_path: Path, roi: tuple[str, str] = ROI) -> dict:
    """Trace the ROI and split its loads into those of the two arrays."""
    addr_file = tmp_path / f"{binary.name}-addrs.txt"
    stream = trace_command_lackey(
        [str(binary)], roi_symbols=roi, env={"ROI_ADDR_OUT": str(addr_file)}
    )
    index_base, values_base, threads = map(int, addr_file.read_text().split())
    in_index = (stream.addr >= index_base) & (stream.addr < index_base + 4 * N_ELEMENTS)
    in_values = (stream.addr >= values_base) & (stream.addr < values_base + 8 * N_ELEMENTS)
    return {
        "stream": stream,
        "index": stream.addr[in_index] - np.uint64(index_base),
        "values": stream.addr[in_values] - np.uint64(values_base),
        "array_pcs": stream.pc[in_index | in_values],
        "threads": threads,
    }


PERMUTATION = (np.arange(N_ELEMENTS, dtype=np.int64) * 7919) % N_ELEMENTS


@needs_valgrind
@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("pie", [False, True], ids=["nopie", "pie"])
def test_roi_records_exactly_the_gather_loop(
    programs: dict, tmp_path: Path, compiler: str, pie: bool
) -> None:
    binary = programs[(compiler, pie)]
    got = gather_loads(binary, tmp_path)
    stream = got["stream"]
    np.testing.assert_array_equal(got["index"], 4 * np.arange(N_ELEMENTS))
    np.testing.assert_array_equal(got["values"], 8 * PERMUTATION)
    # Besides the loop's loads only a few: gather's `ret`, main's code before finished().
    assert 2 * N_ELEMENTS <= len(stream) <= 2 * N_ELEMENTS + 8
    # The PCs are run-time addresses: inside gather, loaded at the recorded base.
    meta = stream.metadata
    base = int(meta["load_base"], 16)
    assert meta["pie"] is pie and (base > 0) is pie
    assert meta["load_base_source"].startswith("read from" if pie else "not PIE")
    start = function_start(binary, GATHER_MANGLED) + base
    assert int(meta["roi_addresses"][0], 16) == start
    assert ((got["array_pcs"] >= start) & (got["array_pcs"] < start + 256)).all()


@needs_valgrind
@pytest.mark.parametrize("compiler", COMPILERS)
def test_pie_and_fixed_builds_give_the_same_loads_relative_to_their_base(
    programs: dict, tmp_path: Path, compiler: str
) -> None:
    fixed = gather_loads(programs[(compiler, False)], tmp_path)
    pie = gather_loads(programs[(compiler, True)], tmp_path)
    for got, binary in ((fixed, programs[(compiler, False)]), (pie, programs[(compiler, True)])):
        base = int(got["stream"].metadata["load_base"], 16)
        got["offsets"] = got["array_pcs"] - np.uint64(function_start(binary, GATHER_MANGLED) + base)
    np.testing.assert_array_equal(fixed["offsets"], pie["offsets"])
    np.testing.assert_array_equal(fixed["index"], pie["index"])
    np.testing.assert_array_equal(fixed["values"], pie["values"])


@needs_valgrind
def test_demangled_and_mangled_names_give_the_same_trace(programs: dict) -> None:
    binary = [str(programs[(COMPILERS[0], True)])]
    demangled = trace_command_lackey(binary, roi_symbols=ROI)
    mangled = trace_command_lackey(binary, roi_symbols=(GATHER_MANGLED, "_ZN3roi8finishedEv"))
    for column in ("instr_id", "pc", "addr"):
        np.testing.assert_array_equal(getattr(demangled, column), getattr(mangled, column))
    # The metadata keeps the names as given and the functions they resolved to.
    assert demangled.metadata["roi_symbols"] == list(ROI)
    assert mangled.metadata["roi_symbols"] == [GATHER_MANGLED, "_ZN3roi8finishedEv"]
    assert demangled.metadata["roi_functions"] == mangled.metadata["roi_functions"]
    assert demangled.metadata["roi_functions"][0] == GATHER_MANGLED


@needs_valgrind
def test_metadata_records_the_roi_and_the_environment(programs: dict) -> None:
    binary = programs[(COMPILERS[0], True)]
    meta = trace_command_lackey([str(binary)], roi_symbols=ROI).metadata
    assert meta["roi_applied"] is True and meta["roi_entries"] == 1
    assert meta["roi_functions_demangled"] == [GATHER, "roi::finished()"]
    assert meta["valgrind_version"].startswith("valgrind-")
    assert meta["program"] == str(binary) and len(meta["program_sha256"]) == 64
    assert meta["omp_num_threads"] == "1" and meta["program_env"]["LC_ALL"] == "C"
    assert meta["stopped_at_max_loads"] is False and meta["instructions_executed"] > 10_000
    whole = trace_command_lackey([str(binary)], max_loads=50).metadata
    assert whole["roi_applied"] is False and whole["roi_symbols"] is None
    assert whole["stopped_at_max_loads"] is True


@needs_valgrind
def test_typo_names_the_symbol_and_suggests_the_close_match(programs: dict) -> None:
    binary = programs[(COMPILERS[0], False)]
    with pytest.raises(TracingError) as exc:
        trace_command_lackey([str(binary)], roi_symbols=("roi::gahter", "roi::finished"))
    msg = str(exc.value)
    assert "'roi::gahter' not found" in msg and str(binary) in msg
    assert GATHER in msg and GATHER_MANGLED in msg  # the close match, both spellings


@needs_valgrind
def test_overloaded_short_name_is_ambiguous(programs: dict) -> None:
    binary = programs[(COMPILERS[0], False)]
    with pytest.raises(TracingError, match="ambiguous") as exc:
        trace_command_lackey([str(binary)], roi_symbols=("roi::gather", "roi::finished"))
    assert GATHER in str(exc.value) and "roi::gather(double const*, int const*, int)" in str(
        exc.value
    )


@needs_valgrind
@pytest.mark.parametrize("compiler", COMPILERS)
def test_inlined_functions_fail_before_the_run(
    programs: dict, compiler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inlined everywhere, a function never runs: fail at once with the hint, not after a run."""

    real_popen = subprocess.Popen

    def no_valgrind(cmd: list[str], *args: object, **kwargs: object) -> subprocess.Popen:
        assert not str(cmd[0]).endswith("valgrind"), "valgrind was started"
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(lackey.subprocess, "Popen", no_valgrind)
    binary = programs[(compiler, True)]
    # always_inline with external linkage: nm lists it, but nothing calls it.
    assert any(s.demangled.startswith("roi::scaled(") for s in function_symbols(binary))
    with pytest.raises(TracingError, match="nothing in the program calls it") as exc:
        trace_command_lackey([str(binary)], roi_symbols=("roi::scaled", "roi::finished"))
    assert "noinline" in str(exc.value) and "_omp_fn" in str(exc.value)
    # static inline: no symbol at all; the message names inlining among the causes.
    with pytest.raises(TracingError, match="not found") as exc:
        trace_command_lackey([str(binary)], roi_symbols=("roi::twice", "roi::finished"))
    assert "inlined at every call site" in str(exc.value)


@needs_valgrind
def test_roi_never_started_or_never_ended_fails_with_the_reason(programs: dict) -> None:
    binary = [str(programs[(COMPILERS[0], True)])]
    other = "roi::gather(double const*, int const*, int)"  # only called with an argument
    with pytest.raises(TracingError, match="the ROI never started") as exc:
        trace_command_lackey(binary, roi_symbols=(other, "roi::finished"))
    assert "did not reach it" in str(exc.value)
    with pytest.raises(TracingError, match="never ran after it") as exc:
        trace_command_lackey(binary, roi_symbols=(GATHER, "roi::never_called_here"))
    assert "ran 1 time" in str(exc.value)


@needs_valgrind
def test_program_error_is_in_the_message_with_its_exit_code(programs: dict) -> None:
    binary = programs[(COMPILERS[0], False)]
    with pytest.raises(TracingError) as exc:
        trace_command_lackey([str(binary)], roi_symbols=ROI, env={"FAIL_READING": "web.el"})
    msg = str(exc.value)
    assert "exit code 7" in msg
    assert "error: cannot read graph web.el" in msg
    assert "Exit code: 0" not in msg  # lackey's statistics are off


@needs_valgrind
def test_openmp_region_as_roi_runs_with_one_thread(tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    binary = build(tmp_path, "g++", pie=True, openmp=True)
    if binary is None:
        pytest.skip("g++ -fopenmp does not link here (libgomp missing)")
    region = "roi::parallel_sum [clone ._omp_fn.0]"  # gcc's outlined body of the parallel loop
    got = gather_loads(binary, tmp_path, roi=(region, "roi::parallel_done"))
    assert got["threads"] == 1
    assert got["stream"].metadata["omp_num_threads"] == "1"
    np.testing.assert_array_equal(got["values"], 8 * np.arange(N_ELEMENTS))
    assert len(got["index"]) == 0
    # The app's env may ask for more threads.
    addr_file = tmp_path / "threads.txt"
    env = {"OMP_NUM_THREADS": "2", "ROI_ADDR_OUT": str(addr_file)}
    stream = trace_command_lackey([str(binary)], max_loads=10, env=env)
    assert stream.metadata["omp_num_threads"] == "2"


# ------------------------------------------------------------------------- commands and parser


def test_resolve_command(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    program = tmp_path / "bin" / "bfs"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    argv = resolve_command("bin/bfs -f 'my graph.el' -n 2", tmp_path)
    assert argv == [str(program), "-f", "my graph.el", "-n", "2"]
    assert command_program_path("./bin/bfs -n 2", tmp_path) == [str(program)]
    assert resolve_command([str(program)], Path("/")) == [str(program)]
    # A bare name is looked up on the traced program's PATH, and is no rule input.
    assert resolve_command("true", tmp_path)[0] == shutil.which("true", path="/usr/bin:/bin")
    assert command_program_path("true", tmp_path) == []
    # Not built yet (another rule may build it): still the rule input, no error.
    assert command_program_path("bin/sssp -n 1", tmp_path) == [str(tmp_path / "bin" / "sssp")]
    with pytest.raises(TracingError) as exc:
        resolve_command("bin/sssp -n 1", tmp_path)
    assert str(tmp_path / "bin" / "sssp") in str(exc.value) and "relative to" in str(exc.value)
    with pytest.raises(TracingError, match="not found on the traced program's PATH"):
        resolve_command("no-such-program-here", tmp_path)
    program.chmod(0o644)
    with pytest.raises(TracingError, match="not executable"):
        resolve_command("bin/bfs", tmp_path)


@needs_valgrind
def test_relative_command_runs_in_cwd(programs: dict, tmp_path: Path) -> None:
    binary = programs[(COMPILERS[0], False)]
    stream = trace_command_lackey(f"./{binary.name}", max_loads=5, cwd=binary.parent)
    assert stream.metadata["program"] == str(binary)
    assert stream.metadata["argv"] == [f"./{binary.name}"]  # argv[0] as written: it is on the stack
    with pytest.raises(TracingError, match="relative to"):
        trace_command_lackey(f"./{binary.name}", max_loads=5, cwd=tmp_path)


def synthetic_lackey(seed: int, n_instr: int = 3000) -> tuple[bytes, list[int]]:
    """Random lackey-like text with log lines; the instruction addresses of each I line."""
    rng = np.random.default_rng(seed)
    lines = [b"==77== Lackey, an example Valgrind tool"]
    pcs = []
    for _ in range(n_instr):
        pc = int(rng.choice([0x401000, 0x401010, 0x401020, 0x108000 + int(rng.integers(4096))]))
        pcs.append(pc)
        lines.append(b"I  %08x,%d" % (pc, rng.integers(1, 16)))
        for _ in range(int(rng.integers(0, 3))):
            kind = b"LSM"[int(rng.integers(3))]
            addr = int(rng.integers(1 << 40))
            lines.append(b" %c %08x,%d" % (kind, addr, 8))
    lines.append(b"==77== ")
    return b"\n".join(lines) + b"\n", pcs


def reference_parse(text: bytes, roi: tuple[int, int] | None) -> np.ndarray:
    """Line-by-line parse: (instr_id, pc, addr) of each load in the ROI."""
    rows, n_instr, pc, inside = [], 0, 0, roi is None
    for line in text.decode().splitlines():
        if line.startswith("I"):
            pc = int(line[3:].split(",")[0], 16)
            n_instr += 1
            if roi is not None and pc == roi[0]:
                inside = True
            elif roi is not None and pc == roi[1]:
                inside = False
        elif line[:2] in (" L", " M") and inside:
            rows.append((n_instr - 1, pc, int(line[3:].split(",")[0], 16)))
    return np.array(rows, dtype=np.uint64).reshape(-1, 3)


@pytest.mark.parametrize("roi", [None, (0x401010, 0x401020)])
@pytest.mark.parametrize("chunk", [37, 1000, 1 << 20])
def test_parser_matches_a_line_by_line_parse_in_any_chunking(
    roi: tuple[int, int] | None, chunk: int
) -> None:
    text, _ = synthetic_lackey(seed=3)
    parser = _LackeyParser(roi, None)
    pos = 0
    while pos < len(text):  # whole lines per feed, as the tracer reads them
        end = text.rfind(b"\n", pos, pos + chunk) + 1
        end = end if end > pos else text.index(b"\n", pos) + 1
        parser.feed(text[pos:end])
        pos = end
    stream = parser.result()
    got = np.stack([stream.instr_id, stream.pc, stream.addr], axis=1)
    np.testing.assert_array_equal(got, reference_parse(text, roi))
    assert parser.n_instr == text.count(b"\nI")
    assert len(stream) > 100
    if roi is not None:
        assert parser.roi_entries > 10 and parser.roi_exits > 10
    # max_loads cuts the same stream.
    limited = _LackeyParser(roi, 50)
    limited.feed(text)
    np.testing.assert_array_equal(limited.result().addr, stream.addr[:50])
