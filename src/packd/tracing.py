"""Real memory-load traces of executed programs: sancov-instrumented graph kernels, valgrind lackey.

Two backends give a :class:`LoadStream` (one row per executed load, in program order):

* SanitizerCoverage (``trace_kernel``): the graph-kernel program in ``workflow/kernels`` is built
  with ``clang -fsanitize-coverage=func,inline-8bit-counters,trace-loads`` and linked with a runtime
  (inlined into every load site when ``llvm-link`` is present) that stores one 8-byte record
  (load site, address) per load of the kernel's region of interest (ROI) into a memory-mapped
  file. Fast; ``instr_id`` is the load's ordinal in the ROI (``"load_ordinal"``).
* valgrind lackey (``trace_command_lackey``): any binary, no recompiling, ~100x slower;
  ``instr_id`` is a true instruction count (``"instruction_count"``). docs/tracing.md describes
  its ROI, environment, reproducibility and cost.
"""

from __future__ import annotations

import collections
import difflib
import fcntl
import functools
import hashlib
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "GRAPHS",
    "KERNELS",
    "LACKEY_ENV_DEFAULTS",
    "RECORD_DTYPE",
    "SANCOV_FLAGS",
    "TRACED_PROGRAM_ENV",
    "FunctionSymbol",
    "LoadStream",
    "TracingError",
    "command_program_path",
    "compile_kernel",
    "decode_records",
    "find_function",
    "function_symbols",
    "resolve_command",
    "trace_command_lackey",
    "trace_kernel",
    "valgrind_version",
]

KERNELS = ("bfs", "pr", "cc", "bc", "sssp")
GRAPHS = ("kron", "uniform")

# clang 14 instruments nothing with trace-loads alone: it needs a coverage mode beside it. `func`
# puts its counters on function entries only (cheaper); trace-loads still hooks every load.
SANCOV_FLAGS = ("-fsanitize-coverage=func,inline-8bit-counters,trace-loads",)
# -fno-pie/-no-pie: fixed code addresses, so PCs are stable and nm's addresses are run-time ones.
# -gdwarf-4: valgrind 3.19 cannot read the DWARF 5 that clang 14 emits by default.
_CFLAGS = ("-O2", "-gdwarf-4", "-fno-pie")
_CFLAGS_INLINED = ("-O2", "-fno-pie")
_LDFLAGS = ("-no-pie",)

RECORD_DTYPE = np.dtype("<u8")
"""On-disk record of the sancov runtime: the PC's low 17 bits << 47 | the 47-bit address."""
_ADDR_BITS = 47
_SITE_BITS = 64 - _ADDR_BITS

TRACED_PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}
"""The whole environment of a traced program (either backend), besides what the caller adds:
the stack's addresses depend on the environment, so it must not come from the machine."""

_STDERR_TAIL = 2000  # characters of stderr quoted in errors: enough to see the cause


class TracingError(RuntimeError):
    """A compile or trace step failed; the message names the command, cause and stderr tail.

    sections: further titled texts quoted after it (e.g. a traced program's own stderr).
    """

    def __init__(
        self,
        command: Sequence[str] | str,
        cause: str,
        stderr: str = "",
        sections: Mapping[str, str] | None = None,
    ) -> None:
        cmd = command if isinstance(command, str) else shlex.join(str(c) for c in command)
        msg = f"command `{cmd}` failed: {cause}"
        tail = stderr.strip()[-_STDERR_TAIL:]
        if tail:
            msg += f"\n--- stderr (tail) ---\n{tail}"
        for title, text in (sections or {}).items():
            if text.strip():
                msg += f"\n--- {title} ---\n{text.strip()[-_STDERR_TAIL:]}"
        super().__init__(msg)
        self.command = cmd
        self.cause = cause
        self.stderr_tail = tail


@dataclass(frozen=True)
class LoadStream:
    """Executed loads in program order: instruction id, load PC and virtual address."""

    instr_id: np.ndarray  # uint64
    pc: np.ndarray  # uint64
    addr: np.ndarray  # uint64
    instr_id_kind: str  # "load_ordinal" (sancov) or "instruction_count" (lackey)
    # What the trace's file must record about how it was taken (lackey: program, ROI, env).
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of loads."""
        return int(self.addr.shape[0])


# ---------------------------------------------------------------------------------------------
# helpers


def _exit_cause(returncode: int) -> str:
    """Describe a subprocess exit status (negative means killed by a signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name} (exit status {returncode})"
    return f"exit code {returncode}"


def _run(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    only_env: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise TracingError on failure or non-zero exit.

    env adds to the caller's environment, or with only_env is the whole environment.
    """
    full_env = None if env is None else dict(env) if only_env else {**os.environ, **env}
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, env=full_env, cwd=cwd
        )
    except OSError as exc:  # missing or non-executable program
        raise TracingError(cmd, f"could not start: {exc}") from exc
    if proc.returncode != 0:
        raise TracingError(cmd, _exit_cause(proc.returncode), proc.stderr)
    return proc


def _stderr_info(stderr: str) -> dict[str, str]:
    """Parse the program's ``key=value`` stderr lines (n, m, sources, roi_seconds)."""
    info: dict[str, str] = {}
    for line in stderr.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            info[key] = value.strip()
    return info


@functools.cache
def _no_aslr_prefix() -> tuple[str, ...]:
    """``setarch ARCH -R`` when it works here, so heap/stack addresses repeat across runs."""
    setarch = shutil.which("setarch")
    if setarch is None:
        return ()
    prefix = (setarch, platform.machine(), "-R")
    # Containers may forbid personality(2): probe once rather than fail every trace.
    ok = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    return prefix if ok else ()


def _fast_tmp_dir() -> str | None:
    """A tmpfs directory for trace files when there is one: a 390 MB trace written 3.5x faster
    there than to disk here (writeback throttling), and it is read back into memory at once."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return None


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Reject an unknown kernel/graph name before spending a run on it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def kernel_arguments(
    kernel: str | None, graph: str, scale: int, degree: int, seed: int
) -> list[str]:
    """Command-line arguments of graphkernels for one kernel on one generated graph."""
    _check_choice("graph", graph, GRAPHS)
    args = ["--graph", graph, "--scale", str(int(scale)), "--degree", str(int(degree))]
    args += ["--seed", str(int(seed))]
    if kernel is not None:
        _check_choice("kernel", kernel, KERNELS)
        args = ["--kernel", kernel, *args]
    return args


# ---------------------------------------------------------------------------------------------
# building


def _compiler_version(cc_path: str) -> str:
    """First line of ``cc --version`` (e.g. 'Debian clang version 14.0.6')."""
    proc = _run([cc_path, "--version"])
    return proc.stdout.splitlines()[0].strip() if proc.stdout else "unknown"


def compile_kernel(
    kernel_dir: Path,
    out_binary: Path,
    instrumented: bool,
    cc: str = "clang",
    inline_hooks: bool = True,
) -> dict[str, str]:
    """Build graphkernels (sancov-instrumented or plain) and return tool versions for metadata.

    inline_hooks: inline the tracer's hooks into the load sites when llvm-link is there (the
    loads and addresses recorded are the same either way; only the speed and the PCs differ).
    """
    kernel_dir = Path(kernel_dir)
    out_binary = Path(out_binary)
    main_src = kernel_dir / "graphkernels.c"
    runtime_src = kernel_dir / ("sancov_runtime.c" if instrumented else "roi_noop.c")
    for src in (main_src, runtime_src):
        if not src.is_file():
            raise FileNotFoundError(f"kernel source not found: {src}")
    cc_path = shutil.which(cc)
    if cc_path is None and not instrumented:
        # The plain build is ordinary C: any of these will do.
        for alt in ("clang", "gcc", "cc"):
            cc_path = shutil.which(alt)
            if cc_path:
                break
    if cc_path is None:
        hint = "install clang (e.g. `apt-get install clang`)"
        what = "SanitizerCoverage trace-loads needs clang" if instrumented else "no C compiler"
        raise TracingError([cc], f"compiler {cc!r} not found on PATH ({what}); {hint}")
    version = _compiler_version(cc_path)
    if instrumented and "clang" not in version.lower():
        raise TracingError([cc_path], f"{version!r} is not clang: trace-loads needs clang")

    out_binary.parent.mkdir(parents=True, exist_ok=True)
    kernel_flags = [*_CFLAGS, *(SANCOV_FLAGS if instrumented else ())]
    llvm_link = _llvm_link(cc_path) if instrumented and inline_hooks else None
    with tempfile.TemporaryDirectory(prefix="packd-cc-") as tmp:
        rt_obj = Path(tmp) / "runtime.o"
        main_obj = Path(tmp) / "graphkernels.o"
        tmp_bin = Path(tmp) / "graphkernels"
        fallback_reason = ""
        if llvm_link is not None:
            # Inlined hooks: both files to bitcode, linked, then optimised together so that
            # every load site gets its own copy of the hook (no call per load).
            # No -g: clang 14 crashes emitting the debug info of the linked bitcode.
            linked = Path(tmp) / "linked.bc"
            try:
                _run(
                    [cc_path, *_CFLAGS_INLINED, "-DPACKD_INLINE_HOOKS", "-flto", "-c"]
                    + ["-o", rt_obj, runtime_src]
                )
                _run(
                    [cc_path, *_CFLAGS_INLINED, *SANCOV_FLAGS, "-flto", "-c"]
                    + ["-o", main_obj, main_src]
                )
                _run([llvm_link, main_obj, rt_obj, "-o", linked])
                _run([cc_path, *_CFLAGS_INLINED, "-c", "-o", main_obj, linked])
                _run([cc_path, *_LDFLAGS, "-o", tmp_bin, main_obj, "-lm", "-lpthread"])
                kernel_flags = [*_CFLAGS_INLINED, *SANCOV_FLAGS]
            except TracingError as exc:
                # E.g. an llvm-link of another LLVM version than clang's: the called hooks
                # record the same loads, only slower.
                fallback_reason = f" (inlining failed: {exc.cause})"
                llvm_link = None
        if llvm_link is None:
            # The runtime gets no coverage flags, or the hooks would trace themselves.
            _run([cc_path, *_CFLAGS, "-c", "-o", rt_obj, runtime_src])
            _run([cc_path, *kernel_flags, "-c", "-o", main_obj, main_src])
            # Link without the coverage flags: with them clang pulls in a sanitizer runtime.
            _run([cc_path, *_LDFLAGS, "-o", tmp_bin, main_obj, rt_obj, "-lm", "-lpthread"])
        # Copy then rename: a concurrent reader never sees a half-written binary.
        staged = out_binary.with_name(out_binary.name + ".tmp")
        shutil.copy2(tmp_bin, staged)
        staged.chmod(0o755)
        os.replace(staged, out_binary)
    instrumentation = "none"
    if instrumented:
        instrumentation = "sancov-trace-loads, " + (
            "hooks inlined" if llvm_link else "hooks called" + fallback_reason
        )
    return {"cc": version, "cflags": " ".join(kernel_flags), "instrumentation": instrumentation}


def _llvm_link(cc_path: str) -> str | None:
    """llvm-link of the same LLVM as clang (clang-14 -> llvm-link-14), or None when absent."""
    name = Path(cc_path).name
    version = name.rsplit("-", 1)[1] if "-" in name else None
    resolved = Path(os.path.realpath(cc_path))  # /usr/lib/llvm-14/bin/clang on Debian
    candidates = [resolved.parent / "llvm-link"]
    if version and version.isdigit():
        candidates.append(Path(f"/usr/bin/llvm-link-{version}"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("llvm-link")


# ---------------------------------------------------------------------------------------------
# sancov backend


def trace_kernel(
    binary: Path,
    kernel: str,
    graph: str,
    scale: int,
    degree: int,
    seed: int,
    max_loads: int | None = None,
    *,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> LoadStream:
    """Run the sancov-instrumented graphkernels and return the loads of its kernel (the ROI).

    The program sees only a fixed environment plus extra_env.
    """
    if max_loads is not None and max_loads <= 0:
        raise ValueError(f"max_loads must be positive, not {max_loads}")
    # The stack's addresses depend on everything above it: the environment, argv[0] and the
    # auxiliary vector. A fixed environment and `./name` from the binary's folder give the same
    # addresses wherever the job runs (a laptop, a SLURM node with its SLURM_* variables).
    binary = Path(binary).resolve()
    cmd = [*_no_aslr_prefix(), f"./{binary.name}"]
    cmd += kernel_arguments(kernel, graph, scale, degree, seed)
    cmd += [str(a) for a in extra_args]
    with tempfile.TemporaryDirectory(prefix="packd-trace-", dir=_fast_tmp_dir()) as tmp:
        out = Path(tmp) / "loads.bin"
        env = {**TRACED_PROGRAM_ENV, **(extra_env or {})}
        env["PACKD_TRACE_OUT"] = str(out)
        # Fixed width, 0 = no limit: the same environment size with or without a limit, so a
        # limited trace is a prefix of the full one (stack addresses included).
        env["PACKD_MAX_LOADS"] = f"{int(max_loads or 0):020d}"
        proc = _run(cmd, env=env, cwd=binary.parent, only_env=True)
        size = out.stat().st_size if out.exists() else 0
        if size == 0:
            raise TracingError(
                cmd, "no loads recorded (is the binary built with sancov trace-loads?)", proc.stderr
            )
        info = _stderr_info(proc.stderr)
        if size % RECORD_DTYPE.itemsize or "trace_pc_base" not in info:
            raise TracingError(cmd, f"truncated trace: {size} bytes", proc.stderr)
        if int(info["trace_records"]) * RECORD_DTYPE.itemsize != size:
            raise TracingError(
                cmd, f"trace holds {size} bytes, not {info['trace_records']} records", proc.stderr
            )
        rec = np.fromfile(out, dtype=RECORD_DTYPE)
    pc, addr = decode_records(rec, int(info["trace_pc_base"], 16))
    del rec
    instr_id = np.arange(addr.shape[0], dtype=np.uint64)
    return LoadStream(instr_id=instr_id, pc=pc, addr=addr, instr_id_kind="load_ordinal")


def decode_records(records: np.ndarray, pc_base: int) -> tuple[np.ndarray, np.ndarray]:
    """(pc, addr) columns of the runtime's 8-byte records, given its printed trace_pc_base.

    The runtime checked that the code lies in [pc_base, pc_base + 2**17), so the PC's low 17
    bits determine it.
    """
    records = np.asarray(records, dtype=np.uint64)
    addr = records & np.uint64((1 << _ADDR_BITS) - 1)
    site_mask = np.uint64((1 << _SITE_BITS) - 1)
    low_bits = records >> np.uint64(_ADDR_BITS)
    offset = (low_bits - np.uint64(pc_base & ((1 << _SITE_BITS) - 1))) & site_mask
    return offset + np.uint64(pc_base), addr


# ---------------------------------------------------------------------------------------------
# lackey backend

# Where valgrind 3.x maps a PIE main program on amd64 when /proc cannot tell (see _load_base).
_VALGRIND_PIE_BASE = 0x108000
_MAPS_WAIT_S = 30.0  # longest wait for valgrind to map the program (it takes ~0.1 s)
_PIPE_BYTES = 1 << 20
# Defaults of the traced program's environment on the lackey path, below the app's env: an
# OpenMP program traced with one thread per core of the machine would vary with the machine.
LACKEY_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1"}
_TAIL_LINES = 20  # lines of the program's stdout/stderr and of valgrind's log quoted in errors
_TAIL_BYTES = 1 << 16  # only the end of a program's output file is read back
_FUNCTION_TYPES = frozenset("TtWwi")  # nm types of code symbols

_HEX = np.zeros(256, dtype=np.uint64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint64)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_ADDR_OFFSET = 3  # "I  0401126,3" and " L 1ffefffd38,8": the address starts at column 3
_CHUNK = 4 << 20  # bytes per parse step: large enough for numpy, small enough to stay in cache
# valgrind's start-up banner: the same in every run, so left out of error messages.
_VALGRIND_PREAMBLE = (
    "Lackey, an example",
    "Copyright (C)",
    "Using Valgrind",
    "Command:",
    "Parent PID",
)


def _parse_hex_fields(buf: np.ndarray, line_starts: np.ndarray, commas: np.ndarray) -> np.ndarray:
    """Addresses of lackey lines: the hex digits from column 3 up to each line's comma."""
    if line_starts.size == 0:
        return np.zeros(0, dtype=np.uint64)
    first = line_starts + _ADDR_OFFSET
    comma = commas[np.searchsorted(commas, first)]  # each line's own comma: the first after it
    width = comma - first
    max_width = int(width.max())
    # One gather of the digits right-aligned at the comma; columns left of a short address are
    # masked, so each column costs one pass instead of one pass per possible digit.
    column = np.arange(max_width)
    pos = comma[:, None] - max_width + column
    digits = _HEX[buf[np.maximum(pos, 0)]]
    digits[pos < first[:, None]] = 0
    shifts = np.uint64(4) * (max_width - 1 - column).astype(np.uint64)
    return np.bitwise_or.reduce(digits << shifts, axis=1)


class _LackeyParser:
    """Incremental parser of lackey --trace-mem output, in chunks of whole lines.

    Outside the ROI only the I lines are counted (C-speed bytes.count) and the ROI's first
    instruction is searched for as text; inside it the lines are parsed with numpy.
    """

    def __init__(self, roi: tuple[int, int] | None, max_loads: int | None) -> None:
        self.max_loads = max_loads
        self.roi: tuple[int, int] | None = None
        self.recording = True  # without a ROI, the whole program is recorded
        self.set_roi(roi)
        self.n_instr = 0  # I lines seen so far, over the whole run
        self.last_pc = 0
        self.n_loads = 0
        self.roi_entries = 0  # times the begin symbol's first instruction ran outside the ROI
        self.roi_exits = 0  # times the end symbol's first instruction closed the ROI
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.log_tail: collections.deque[str] = collections.deque(maxlen=4 * _TAIL_LINES)

    def set_roi(self, roi: tuple[int, int] | None) -> None:
        """Record only from the run-time address roi[0] to roi[1] (call before the first feed)."""
        self.roi = roi
        self.recording = roi is None
        if roi is not None:
            # lackey prints "I  %08lx,%lu": the instruction's line, up to its comma, as text.
            self._begin_line = b"I  %08x," % roi[0]
            self._end_line = b"I  %08x," % roi[1]

    @property
    def done(self) -> bool:
        """True once max_loads loads have been collected."""
        return self.max_loads is not None and self.n_loads >= self.max_loads

    @staticmethod
    def _find_line(data: bytes, line_head: bytes, pos: int) -> int:
        """Start of the first line at or after pos (a line start) that begins with line_head."""
        if data.startswith(line_head, pos):
            return pos
        hit = data.find(b"\n" + line_head, pos)
        return -1 if hit < 0 else hit + 1

    def _keep_log_lines(self, data: bytes) -> None:
        """Keep valgrind's own "==pid==" lines (a fatal signal's report), quoted in errors."""
        pos = 0 if data.startswith(b"==") else data.find(b"\n==")
        while pos >= 0:
            start = pos + (data[pos] == 10)
            end = data.find(b"\n", start)
            line = data[start:end].decode(errors="replace")
            message = line.split("==", 2)[-1].strip()
            if message and not message.startswith(_VALGRIND_PREAMBLE):
                self.log_tail.append(line)
            pos = data.find(b"\n==", end)

    def feed(self, data: bytes) -> None:
        """Parse complete lines (data must end with a newline)."""
        self._keep_log_lines(data)
        view = memoryview(data)
        pos = 0
        while pos < len(data) and not self.done:
            if not self.recording:
                hit = self._find_line(data, self._begin_line, pos)
                stop = len(data) if hit < 0 else hit
                if stop > pos:
                    self.n_instr += data.count(b"\nI", pos, stop) + data.startswith(b"I", pos)
                if hit >= 0:
                    self.recording = True
                    self.roi_entries += 1
            else:
                hit = -1 if self.roi is None else self._find_line(data, self._end_line, pos)
                stop = len(data) if hit < 0 else hit
                self._parse_recorded(np.frombuffer(view[pos:stop], dtype=np.uint8))
                if hit >= 0:
                    self.recording = False
                    self.roi_exits += 1
            pos = stop

    def _parse_recorded(self, buf: np.ndarray) -> None:
        """Collect the loads of whole lines that all lie in the ROI."""
        if buf.size == 0:
            return
        ends = np.flatnonzero(buf == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        c0 = buf[starts]
        c1 = buf[np.minimum(starts + 1, buf.size - 1)]
        is_instr = c0 == ord("I")
        # " M" (modify) reads before it writes, so it counts as a load.
        is_load = (c0 == ord(" ")) & ((c1 == ord("L")) | (c1 == ord("M")))
        kept = np.flatnonzero(is_instr | is_load)
        kept_instr = is_instr[kept]
        instr_before = np.cumsum(kept_instr)  # I lines up to and including each kept line
        # The executing instruction of a load: the last I line before it (maybe in an earlier
        # segment, then it is last_pc).
        last_instr = np.maximum.accumulate(np.where(kept_instr, np.arange(kept.size), -1))
        loads = np.flatnonzero(~kept_instr)
        if self.max_loads is not None:
            loads = loads[: self.max_loads - self.n_loads]
        commas = np.flatnonzero(buf == ord(","))
        if loads.size:
            addr = _parse_hex_fields(buf, starts[kept[loads]], commas)
            pc_line = last_instr[loads]
            pc = np.full(loads.size, self.last_pc, dtype=np.uint64)
            own = pc_line >= 0
            pc[own] = _parse_hex_fields(buf, starts[kept[pc_line[own]]], commas)
            instr_id = (self.n_instr + instr_before[loads] - 1).clip(0).astype(np.uint64)
            self.parts.append((instr_id, pc, addr))
            self.n_loads += int(loads.size)
        if kept_instr.any():
            last = starts[kept[last_instr[-1]]]
            self.last_pc = int(_parse_hex_fields(buf, np.array([last]), commas)[0])
        self.n_instr += int(instr_before[-1]) if kept.size else 0

    def result(self, metadata: dict[str, Any] | None = None) -> LoadStream:
        """All collected loads as one LoadStream."""
        if self.parts:
            cols = [np.concatenate([p[i] for p in self.parts]) for i in range(3)]
        else:
            cols = [np.zeros(0, dtype=np.uint64) for _ in range(3)]
        return LoadStream(
            instr_id=cols[0],
            pc=cols[1],
            addr=cols[2],
            instr_id_kind="instruction_count",
            metadata=dict(metadata or {}),
        )


# ---------------------------------------------------------------------------------------------
# lackey: the program, its symbols and the ROI


def resolve_command(
    command: str | Sequence[str],
    base_dir: Path,
    search_path: str = TRACED_PROGRAM_ENV["PATH"],
) -> list[str]:
    """The command's words with the program as an absolute path; raise where it is not found.

    A program named by a path (a word with a ``/``) resolves against base_dir when relative (the
    workflow passes the config file's folder); a bare name is looked up on search_path, the
    traced program's PATH, not the caller's.
    """
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not argv:
        raise ValueError("empty command")
    program = argv[0]
    if "/" in program:
        path = Path(program).expanduser()
        where = path if path.is_absolute() else Path(base_dir) / path
        where = Path(os.path.abspath(where))
        if not where.is_file():
            raise TracingError(
                argv,
                f"program {program!r} not found: looked for {where}"
                + ("" if path.is_absolute() else f" (relative to {Path(base_dir).resolve()})"),
            )
        if not os.access(where, os.X_OK):
            raise TracingError(argv, f"program {where} is not executable (chmod +x?)")
        return [str(where), *argv[1:]]
    found = shutil.which(program, path=search_path)
    if found is None:
        raise TracingError(
            argv,
            f"program {program!r} not found on the traced program's PATH ({search_path}); "
            f"name it by its path instead (relative paths resolve against {base_dir})",
        )
    return [os.path.abspath(found), *argv[1:]]


def command_program_path(command: str | Sequence[str], base_dir: Path) -> list[str]:
    """[the program's absolute path] when the command names it by a path, else [].

    For a rule input, so that a rebuilt program is traced again. It does not check that the
    program exists: another rule may build it, and Snakemake names a missing input itself.
    """
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not argv or "/" not in argv[0]:
        return []
    return [os.path.abspath(Path(base_dir) / Path(argv[0]).expanduser())]


@dataclass(frozen=True)
class FunctionSymbol:
    """A code symbol of a binary: its mangled and demangled names, link-time address, size."""

    name: str
    demangled: str
    address: int
    size: int
    exported: bool  # in the dynamic symbol table: code outside the binary may call it


def _nm_functions(path: Path, *flags: str) -> list[tuple[int, int, str, str]]:
    """(address, size, type, name) of the code symbols `nm -p -S FLAGS` lists, in table order."""
    nm = shutil.which("nm")
    if nm is None:
        raise TracingError(
            ["nm"], "nm not found on PATH: the ROI needs it (apt-get install binutils)"
        )
    proc = _run([nm, "-p", "-S", "--defined-only", *flags, str(path)])
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) >= 3 and len(parts[1]) == 1:  # no size column: "addr type name"
            address, size, kind, name = parts[0], "0", parts[1], line.split(maxsplit=2)[2]
        elif len(parts) == 4:
            address, size, kind, name = parts
        else:
            continue
        if kind in _FUNCTION_TYPES:
            rows.append((int(address, 16), int(size, 16), kind, name))
    return rows


def function_symbols(binary: Path) -> list[FunctionSymbol]:
    """The code symbols of a binary, each with its mangled and demangled (nm -C) name."""
    raw = _nm_functions(binary)
    demangled = _nm_functions(binary, "-C")
    if len(raw) != len(demangled):  # same table, same order: only the names differ
        raise TracingError(["nm", str(binary)], "nm and nm -C list different symbols")
    try:
        exported = {row[3] for row in _nm_functions(binary, "-D")}
    except TracingError:  # no dynamic symbol table (a static binary)
        exported = set()
    return [
        FunctionSymbol(name, plain[3], address, size, name in exported)
        for (address, size, _, name), plain in zip(raw, demangled, strict=True)
    ]


def _squash(name: str) -> str:
    """A C++ name without blanks: `f(long const*, int)` and `f(long const*,int)` compare equal."""
    return "".join(name.split())


def _without_parameters(demangled: str) -> str:
    """`ns::f(int) const [clone ._omp_fn.0]` -> `ns::f [clone ._omp_fn.0]` (clone suffix kept)."""
    depth = 0
    anonymous = "(anonymous namespace)"
    i = 0
    while i < len(demangled):
        ch = demangled[i]
        if demangled.startswith(anonymous, i):
            i += len(anonymous)
            continue
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            clone = demangled.find(" [clone ", i)
            return demangled[:i] + (demangled[clone:] if clone >= 0 else "")
        i += 1
    return demangled


_INLINING_HINT = (
    "a function inlined at every call site has no code of its own that runs (static inline, "
    "always_inline, or -O2/LTO deciding so): use a function that is really called (mark it "
    "__attribute__((noinline))) or, for an OpenMP loop, its outlined region (NAME._omp_fn.N)"
)


def _describe(symbol: FunctionSymbol) -> str:
    """`demangled (mangled)`, or the name alone for a C name."""
    if symbol.demangled == symbol.name:
        return symbol.name
    return f"{symbol.demangled} ({symbol.name})"


def find_function(binary: Path, wanted: str, symbols: Sequence[FunctionSymbol]) -> FunctionSymbol:
    """The function a ROI symbol names: mangled, demangled, or demangled without parameters.

    Raises TracingError naming the binary and the symbol with close matches when none matches,
    and the candidates when the name is ambiguous (an overloaded C++ name).
    """
    key = _squash(wanted)
    matches = [s for s in symbols if s.name == wanted]
    if not matches:
        matches = [s for s in symbols if _squash(s.demangled) == key]
    if not matches:
        matches = [s for s in symbols if _squash(_without_parameters(s.demangled)) == key]
    by_address = {s.address: s for s in matches}  # aliases (e.g. C1/C2 constructors) are one
    if len(by_address) == 1:
        return matches[0]
    if by_address:
        listed = "\n  ".join(_describe(s) for s in by_address.values())
        raise TracingError(
            [str(binary)],
            f"ROI symbol {wanted!r} is ambiguous in {binary}: it names {len(by_address)} "
            f"functions; give one of these (demangled with its parameters, or mangled):\n  "
            + listed,
        )
    raise TracingError([str(binary)], _not_found_message(binary, wanted, symbols))


def _not_found_message(binary: Path, wanted: str, symbols: Sequence[FunctionSymbol]) -> str:
    """Why a ROI symbol may be missing, with the binary's names that look like it."""
    if not symbols:
        return (
            f"ROI symbol {wanted!r} not found: {binary} has no symbol table (stripped?); "
            "rebuild it without -s or strip"
        )
    by_name: dict[str, list[FunctionSymbol]] = collections.defaultdict(list)
    for s in symbols:
        for name in {s.name, s.demangled, _without_parameters(s.demangled)}:
            by_name[name].append(s)  # a short name lists all its overloads
    short = _without_parameters(wanted)
    close = difflib.get_close_matches(wanted, list(by_name), n=5, cutoff=0.6)
    close += difflib.get_close_matches(short, list(by_name), n=5, cutoff=0.6)
    lowered = short.lower()
    containing = [n for n in by_name if lowered in n.lower()][:5]
    suggestions = {_describe(s) for n in close + containing for s in by_name[n]}
    msg = f"ROI symbol {wanted!r} not found among the {len(symbols)} functions of {binary}"
    if suggestions:
        msg += ". Close matches:\n  " + "\n  ".join(sorted(suggestions))
    return (
        msg + "\nLikely causes: a typo (names may be mangled, demangled, or demangled without "
        f"parameters); {_INLINING_HINT}; a function of a shared library (only the program's own "
        "functions can mark the ROI)."
    )


def _elf_sections(path: Path) -> list[tuple[int, int, int, int]] | None:
    """(type, flags, file offset, size) of each section of a little-endian ELF64 file, or None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        shoff = int.from_bytes(head[0x28:0x30], "little")
        shentsize = int.from_bytes(head[0x3A:0x3C], "little")
        shnum = int.from_bytes(head[0x3C:0x3E], "little")
        f.seek(shoff)
        table = f.read(shentsize * shnum)
    sections = []
    for i in range(shnum):
        entry = table[i * shentsize : (i + 1) * shentsize]
        sh_type = int.from_bytes(entry[4:8], "little")
        flags, _, offset, size = (
            int.from_bytes(entry[j : j + 8], "little") for j in range(8, 40, 8)
        )
        sections.append((sh_type, flags, offset, size))
    return sections


_SHF_ALLOC, _SHF_EXECINSTR = 0x2, 0x4
_SHT_NOBITS, _SHT_SYMTAB, _SHT_DYNSYM = 8, 2, 11


def _is_referenced(binary: Path, symbol: FunctionSymbol) -> bool | None:
    """Whether anything in the binary calls the function or takes its address; None: unknown.

    Code: objdump's disassembly names the address in any call, jump or address computation
    outside the function. Data (function pointers, vtables, OpenMP's outlined regions, PIE
    relocations): its 8 little-endian bytes in a loaded data section. A false match only makes
    the check lenient.
    """
    objdump = shutil.which("objdump")
    sections = _elf_sections(binary)
    if objdump is None or sections is None or symbol.exported:
        return None
    proc = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(binary)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    target = re.compile(rf"(?<![0-9a-fA-F]){symbol.address:x}(?![0-9a-fA-F])")
    own_code = range(symbol.address, symbol.address + max(symbol.size, 1))
    for line in proc.stdout.splitlines():
        where, sep, instruction = line.partition(":\t")
        if not sep or not target.search(instruction):
            continue
        try:
            if int(where.strip(), 16) not in own_code:
                return True
        except ValueError:
            continue
    pointer = symbol.address.to_bytes(8, "little")
    with open(binary, "rb") as f:
        for sh_type, flags, offset, size in sections:
            loaded_data = flags & _SHF_ALLOC and not flags & _SHF_EXECINSTR
            if not loaded_data or sh_type in (_SHT_NOBITS, _SHT_SYMTAB, _SHT_DYNSYM):
                continue
            f.seek(offset)
            if pointer in f.read(size):
                return True
    return False


def _check_called(binary: Path, wanted: str, symbol: FunctionSymbol) -> None:
    """Fail before the run when nothing in the program calls a ROI function (it was inlined)."""
    if _is_referenced(binary, symbol) is False:
        raise TracingError(
            [str(binary)],
            f"ROI symbol {wanted!r} ({_describe(symbol)} at {symbol.address:#x}) is in {binary}, "
            "but nothing in the program calls it or takes its address, so it never runs and "
            f"the ROI would never start: {_INLINING_HINT}.",
        )


def _elf_type(path: Path) -> str | None:
    """'exec' (fixed addresses), 'dyn' (PIE: loaded at a base) or None (not an ELF file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return None
    if len(head) < 18 or head[:4] != b"\x7fELF":
        return None
    e_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
    return {2: "exec", 3: "dyn"}.get(e_type)


def _load_base(pid: int, program: Path) -> int | None:
    """Where the running valgrind process mapped the program's first page, from its maps."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        inode = os.stat(program).st_ino
    except OSError:
        return None
    real = os.path.realpath(program)
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or int(fields[2], 16) != 0:
            continue
        if fields[5] == real or (int(fields[4]) == inode and fields[5].endswith(program.name)):
            return int(fields[0].split("-")[0], 16)
    return None


@functools.cache
def valgrind_version() -> str:
    """`valgrind --version` (e.g. 'valgrind-3.19.0'), or '' when valgrind is missing."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return ""
    return subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file, to record which build of the program was traced."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tail(file: IO[bytes]) -> str:
    """The last lines of a captured output file."""
    file.seek(0, os.SEEK_END)
    file.seek(max(0, file.tell() - _TAIL_BYTES))
    lines = file.read().decode(errors="replace").rstrip().splitlines()
    return "\n".join(line[:300] for line in lines[-_TAIL_LINES:])


@dataclass
class _Roi:
    """A resolved ROI: the symbols as given, their functions, and the load base once known."""

    given: tuple[str, str]
    functions: tuple[FunctionSymbol, FunctionSymbol]
    pie: bool
    base: int | None = None
    base_source: str = ""

    def addresses(self) -> tuple[int, int]:
        """Run-time addresses of the begin and end functions."""
        offset = self.base if self.pie else 0
        return (self.functions[0].address + offset, self.functions[1].address + offset)


def _resolve_roi(program: Path, roi_symbols: Sequence[str]) -> _Roi:
    """Find the ROI's functions in the program (before the run) and check that both are called."""
    if len(roi_symbols) != 2 or not all(isinstance(s, str) and s for s in roi_symbols):
        raise ValueError(f"roi_symbols must be two symbol names, not {roi_symbols!r}")
    kind = _elf_type(program)
    if kind is None:
        raise TracingError(
            [str(program)],
            f"a ROI needs an ELF executable, and {program} is not one (a script? name the "
            "binary itself in the command)",
        )
    symbols = function_symbols(program)
    begin, end = (find_function(program, name, symbols) for name in roi_symbols)
    if begin.address == end.address:
        raise TracingError(
            [str(program)],
            f"ROI symbols {roi_symbols[0]!r} and {roi_symbols[1]!r} are the same function: the "
            "ROI runs from the first instruction of the first to that of the second, so give "
            "a function called after the region as the end",
        )
    for name, symbol in zip(roi_symbols, (begin, end), strict=True):
        _check_called(program, name, symbol)
    return _Roi(given=(roi_symbols[0], roi_symbols[1]), functions=(begin, end), pie=kind == "dyn")


def _roi_not_applied(program: Path, roi: _Roi, parser: _LackeyParser) -> str:
    """Why the ROI was not entered or not left, with what to try instead."""
    begin_name, end_name = roi.given
    begin_at, end_at = roi.addresses()
    if parser.roi_entries == 0:
        where = f"{_describe(roi.functions[0])} at {begin_at:#x}"
        if roi.pie:
            where += f" (PIE loaded at {roi.base:#x}, {roi.base_source})"
        return (
            f"the ROI never started: {begin_name!r} ({where}) never ran in {program} during "
            f"{parser.n_instr:,d} instructions. Either the program did not reach it with these "
            f"arguments, or {_INLINING_HINT}."
        )
    return (
        f"the ROI started ({begin_name!r} ran {parser.roi_entries} time(s)) but its end "
        f"{end_name!r} ({_describe(roi.functions[1])} at {end_at:#x}) never ran after it, so the "
        f"trace would run to the program's exit. Either the program does not call it after "
        f"{begin_name!r}, or {_INLINING_HINT}."
    )


def trace_command_lackey(
    command: list[str] | str,
    max_loads: int | None = None,
    roi_symbols: tuple[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadStream:
    """Trace any program's loads with valgrind lackey (slow), optionally only in a ROI.

    The program sees only TRACED_PROGRAM_ENV, LACKEY_ENV_DEFAULTS (OMP_NUM_THREADS=1) and env, so
    a trace does not change with the machine or the SLURM job that takes it. cwd: the folder it
    runs in, against which a relative program path resolves (see resolve_command); argv[0]
    stays as written, since it lies on the traced stack. roi_symbols: the functions whose first
    instructions start and end recording (mangled or demangled names; PIE or not); a ROI that
    cannot be resolved, or that never starts or never ends, raises TracingError. The returned
    stream's metadata records the program, the ROI and the environment, for the trace's file.
    """
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if max_loads is not None and max_loads <= 0:
        raise ValueError(f"max_loads must be positive, not {max_loads}")
    program_env = {**TRACED_PROGRAM_ENV, **LACKEY_ENV_DEFAULTS, **(env or {})}
    base_dir = Path(cwd) if cwd is not None else Path.cwd()
    program = Path(resolve_command(argv, base_dir, program_env["PATH"])[0])
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise TracingError(argv, "valgrind not found on PATH (apt-get install valgrind)")
    roi = _resolve_roi(program, roi_symbols) if roi_symbols is not None else None
    parser = _LackeyParser(None, max_loads)
    read_fd, write_fd = os.pipe()
    pipe_bytes = _widen_pipe(write_fd)
    # The trace and valgrind's own messages go to their own pipe (--log-fd), the program's
    # stdout/stderr to files. --basic-counts=no: lackey's counters (and its "Exit code" line,
    # which does not hold the program's exit code) cost time and tell nothing here.
    cmd = [
        valgrind,
        "--tool=lackey",
        "--basic-counts=no",
        "--trace-mem=yes",
        f"--log-fd={write_fd}",
        *argv,
    ]
    killed = False
    with (
        tempfile.TemporaryFile() as out_file,
        tempfile.TemporaryFile() as err_file,
    ):
        try:
            proc = subprocess.Popen(
                cmd,
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=out_file,
                stderr=err_file,
                env=program_env,
                cwd=cwd,
            )
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            raise TracingError(cmd, f"could not start: {exc}") from exc
        os.close(write_fd)  # only the child writes; EOF arrives when it exits
        try:
            if roi is not None:
                # Before reading any trace: valgrind maps the program before it runs it, and
                # cannot run far (nor exit) while the pipe is full and unread.
                _set_roi_base(roi, proc, program)
                parser.set_roi(roi.addresses())
            carry = b""
            for batch in _read_in_batches(read_fd, pipe_bytes):
                data = carry + batch
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                parser.feed(data[:cut])
                if parser.done:
                    # Enough loads: stop valgrind rather than trace the rest of the program.
                    killed = True
                    proc.kill()
                    break
            if carry and not killed:
                parser.feed(carry + b"\n")
        except BaseException:  # a parse error or ^C: do not leave valgrind running
            proc.kill()
            proc.wait()
            raise
        finally:
            os.close(read_fd)
        returncode = proc.wait()
        if not killed and returncode != 0:
            raise TracingError(
                argv,
                f"the traced program failed under valgrind: {_exit_cause(returncode)}",
                sections={
                    "valgrind (last lines)": "\n".join(list(parser.log_tail)[-_TAIL_LINES:]),
                    "program stdout (last lines)": _tail(out_file),
                    "program stderr (last lines)": _tail(err_file),
                },
            )
    if roi is not None and not killed and (parser.roi_entries == 0 or parser.recording):
        raise TracingError(argv, _roi_not_applied(program, roi, parser))
    metadata = _lackey_metadata(argv, program, program_env, cwd, roi, parser, killed)
    stream = parser.result(metadata)
    if len(stream) == 0:
        where = f"between {roi.given[0]} and {roi.given[1]}" if roi else "in the program"
        raise TracingError(argv, f"no loads recorded {where}")
    return stream


def _set_roi_base(roi: _Roi, proc: subprocess.Popen, program: Path) -> None:
    """Fill in where the program was loaded: its link-time addresses, or the PIE's base."""
    if not roi.pie:
        roi.base, roi.base_source = 0, "not PIE: link-time addresses"
        return
    deadline = time.monotonic() + _MAPS_WAIT_S
    base = _load_base(proc.pid, program)
    while base is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
        base = _load_base(proc.pid, program)
    if base is not None:
        roi.base, roi.base_source = base, "read from the run's /proc/PID/maps"
    else:
        roi.base, roi.base_source = _VALGRIND_PIE_BASE, "valgrind's usual PIE base (maps unread)"


def _widen_pipe(fd: int) -> int:
    """Ask for a 1 MiB pipe (fewer, larger reads); return the pipe's size."""
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (OSError, AttributeError):  # over /proc/sys/fs/pipe-max-size, or not Linux
        return 1 << 16


def _read_in_batches(fd: int, pipe_bytes: int) -> Iterator[bytes]:
    """The pipe's bytes in batches of about _CHUNK, until EOF.

    valgrind writes each lackey line with its own system call: a reader woken for each one
    spends as much CPU as valgrind. So after a short read the reader sleeps while the pipe
    fills (a 1 MiB pipe holds ~50 ms of lackey output; the pause is a tenth of that).
    """
    pause = 0.005 * pipe_bytes / _PIPE_BYTES
    parts: list[bytes] = []
    size = 0
    while True:
        block = os.read(fd, pipe_bytes)
        if not block:
            break
        parts.append(block)
        size += len(block)
        if size >= _CHUNK:
            yield b"".join(parts)
            parts, size = [], 0
        elif len(block) < pipe_bytes // 4:
            time.sleep(pause)
    if parts:
        yield b"".join(parts)


def _lackey_metadata(
    argv: Sequence[str],
    program: Path,
    program_env: Mapping[str, str],
    cwd: Path | None,
    roi: _Roi | None,
    parser: _LackeyParser,
    killed: bool,
) -> dict[str, Any]:
    """What a lackey trace's file must record: the program, the ROI and the environment."""
    metadata: dict[str, Any] = {
        "tracer": "valgrind lackey",
        "valgrind_version": valgrind_version(),
        "argv": list(argv),
        "program": str(program),
        "program_sha256": _file_sha256(program),
        "cwd": str(Path(cwd).resolve() if cwd is not None else Path.cwd()),
        "program_env": dict(program_env),
        "omp_num_threads": program_env.get("OMP_NUM_THREADS"),
        "pie": _elf_type(program) == "dyn",
        "roi_symbols": list(roi.given) if roi else None,
        "roi_applied": roi is not None,
        "stopped_at_max_loads": killed,
        "instructions_executed": parser.n_instr,
    }
    if roi is not None:
        begin, end = roi.addresses()
        metadata.update(
            roi_functions=[s.name for s in roi.functions],
            roi_functions_demangled=[s.demangled for s in roi.functions],
            roi_addresses=[f"{begin:#x}", f"{end:#x}"],
            load_base=f"{roi.base:#x}",
            load_base_source=roi.base_source,
            roi_entries=parser.roi_entries,
        )
    return metadata
