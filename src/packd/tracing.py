"""Real memory-load traces of executed programs: sancov-instrumented graph kernels, valgrind lackey.

Two backends give a :class:`LoadStream` (one row per executed load, in program order):

* SanitizerCoverage (``trace_kernel``): the graph-kernel program in ``workflow/kernels`` is built
  with ``clang -fsanitize-coverage=func,inline-8bit-counters,trace-loads`` and linked with a runtime
  (inlined into every load site when ``llvm-link`` is present) that stores one 8-byte record
  (load site, address) per load of the kernel's region of interest (ROI) into a memory-mapped
  file. Fast; ``instr_id`` is the load's ordinal in the ROI (``"load_ordinal"``).
* valgrind lackey (``trace_command_lackey``): any binary, no recompiling, ~100x slower;
  ``instr_id`` is a true instruction count (``"instruction_count"``).
"""

from __future__ import annotations

import functools
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "GRAPHS",
    "KERNELS",
    "RECORD_DTYPE",
    "SANCOV_FLAGS",
    "LoadStream",
    "TracingError",
    "compile_kernel",
    "decode_records",
    "kernel_answer",
    "kernel_graph",
    "kernel_info",
    "trace_command_lackey",
    "trace_kernel",
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
    """A compile or trace step failed; the message names the command, cause and stderr tail."""

    def __init__(self, command: Sequence[str] | str, cause: str, stderr: str = "") -> None:
        cmd = command if isinstance(command, str) else shlex.join(str(c) for c in command)
        msg = f"command `{cmd}` failed: {cause}"
        tail = stderr.strip()[-_STDERR_TAIL:]
        if tail:
            msg += f"\n--- stderr (tail) ---\n{tail}"
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


def kernel_info(
    binary: Path,
    kernel: str,
    graph: str,
    scale: int,
    degree: int,
    seed: int,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Run a kernel and return its stderr ``key=value`` facts (n, m, sources, roi_seconds)."""
    cmd = [str(binary), *kernel_arguments(kernel, graph, scale, degree, seed)]
    cmd += [str(a) for a in extra_args]
    return _stderr_info(_run(cmd, env=env).stderr)


def kernel_answer(
    binary: Path,
    kernel: str,
    graph: str,
    scale: int,
    degree: int,
    seed: int,
    *,
    extra_args: Sequence[str] = (),
) -> np.ndarray:
    """Run a kernel with --answer: per-vertex depth / score / label / distance (-1 unreached)."""
    dtype = np.float64 if kernel in ("pr", "bc") else np.int64
    with tempfile.TemporaryDirectory(prefix="packd-answer-") as tmp:
        path = Path(tmp) / "answer.txt"
        cmd = [str(binary), *kernel_arguments(kernel, graph, scale, degree, seed)]
        cmd += ["--answer", str(path), *(str(a) for a in extra_args)]
        _run(cmd)
        # float() parsing of %.17g text round-trips doubles exactly.
        return np.array(path.read_bytes().split(), dtype=dtype)


def kernel_graph(
    binary: Path, graph: str, scale: int, degree: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The program's cleaned undirected edge list (src < dst, weight 1..255) as int64 arrays."""
    with tempfile.TemporaryDirectory(prefix="packd-graph-") as tmp:
        path = Path(tmp) / "graph.txt"
        cmd = [str(binary), *kernel_arguments(None, graph, scale, degree, seed)]
        _run([*cmd, "--dump-graph", str(path)])
        values = np.array(path.read_bytes().split(), dtype=np.int64)
    m = int(values[1])
    edges = values[2:].reshape(m, 3)
    return edges[:, 0].copy(), edges[:, 1].copy(), edges[:, 2].copy()


# ---------------------------------------------------------------------------------------------
# lackey backend

_HEX = np.zeros(256, dtype=np.uint64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint64)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_ADDR_OFFSET = 3  # "I  0401126,3" and " L 1ffefffd38,8": the address starts at column 3
_MAX_HEX = 16
_CHUNK = 4 << 20  # bytes per parse step: large enough for numpy, small enough to stay in cache


class _LackeyParser:
    """Incremental, numpy-vectorised parser of lackey --trace-mem output (chunks of lines)."""

    def __init__(self, roi: tuple[int, int] | None, max_loads: int | None) -> None:
        self.roi = roi
        self.max_loads = max_loads
        self.recording = roi is None  # without a ROI, the whole program is recorded
        self.n_instr = 0  # I lines seen so far, over the whole run
        self.last_pc = 0
        self.n_loads = 0
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.log_tail: list[str] = []  # valgrind's own "==pid==" lines, quoted in errors

    @property
    def done(self) -> bool:
        """True once max_loads loads have been collected."""
        return self.max_loads is not None and self.n_loads >= self.max_loads

    def feed(self, data: bytes) -> None:
        """Parse complete lines (data must end with a newline)."""
        buf = np.frombuffer(data, dtype=np.uint8)
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
        if len(self.log_tail) < 200:
            for s in np.flatnonzero(c0 == ord("="))[:50]:
                self.log_tail.append(bytes(data[starts[s] : ends[s]]).decode(errors="replace"))
        keep = is_instr | is_load
        ks = starts[keep]
        if ks.size == 0:
            return
        kinstr = is_instr[keep]
        commas = np.flatnonzero(buf == ord(","))
        # Every kept line has a comma; the first one at or after its start is its own.
        cpos = commas[np.searchsorted(commas, ks)]
        first = ks + _ADDR_OFFSET
        addr = np.zeros(ks.size, dtype=np.uint64)
        for j in range(_MAX_HEX):  # right-aligned hex digits, one column at a time
            pos = cpos - _MAX_HEX + j
            valid = pos >= first
            digit = _HEX[buf[np.where(valid, pos, 0)]]
            addr = np.where(valid, (addr << np.uint64(4)) | digit, addr)
        idx = np.arange(ks.size)
        # PC of a load: the address of the last I line at or before it (maybe in an earlier chunk).
        last_i = np.maximum.accumulate(np.where(kinstr, idx, -1))
        pc = np.where(last_i >= 0, addr[np.maximum(last_i, 0)], np.uint64(self.last_pc))
        icount = self.n_instr + np.cumsum(kinstr)  # I lines up to and including this line
        instr_id = np.maximum(icount - 1, 0).astype(np.uint64)  # 0-based id of the executing one
        if self.roi is None:
            state = np.ones(ks.size, dtype=bool)
        else:
            begin, end = self.roi
            event = np.full(ks.size, -1, dtype=np.int8)
            event[kinstr & (addr == np.uint64(begin))] = 1
            event[kinstr & (addr == np.uint64(end))] = 0
            last_ev = np.maximum.accumulate(np.where(event >= 0, idx, -1))
            state = np.where(last_ev >= 0, event[np.maximum(last_ev, 0)] == 1, self.recording)
            self.recording = bool(state[-1])
        take = ~kinstr & state
        if kinstr.any():
            self.last_pc = int(addr[last_i[-1]])
        self.n_instr = int(icount[-1])
        sel = np.flatnonzero(take)
        if self.max_loads is not None:
            sel = sel[: max(self.max_loads - self.n_loads, 0)]
        if sel.size:
            self.parts.append((instr_id[sel], pc[sel], addr[sel]))
            self.n_loads += int(sel.size)

    def result(self) -> LoadStream:
        """All collected loads as one LoadStream."""
        if self.parts:
            cols = [np.concatenate([p[i] for p in self.parts]) for i in range(3)]
        else:
            cols = [np.zeros(0, dtype=np.uint64) for _ in range(3)]
        return LoadStream(
            instr_id=cols[0], pc=cols[1], addr=cols[2], instr_id_kind="instruction_count"
        )


def _elf_is_pie_or_shared(path: str) -> bool | None:
    """True for ET_DYN (PIE: nm addresses are not run-time ones), False for ET_EXEC, None else."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return None
    if len(head) < 18 or head[:4] != b"\x7fELF":
        return None
    e_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
    return {2: False, 3: True}.get(e_type)


def _resolve_roi(exe: str, roi_symbols: tuple[str, str]) -> tuple[int, int] | None:
    """Run-time addresses of the ROI begin/end functions of a non-PIE binary, else None."""
    path = shutil.which(exe) or exe
    if _elf_is_pie_or_shared(path) is not False:
        warnings.warn(
            f"{path} is not a non-PIE ELF executable: ROI symbols not resolvable, "
            "recording the whole program",
            stacklevel=3,
        )
        return None
    nm = shutil.which("nm")
    proc = (
        subprocess.run([nm, "--defined-only", path], capture_output=True, text=True) if nm else None
    )
    symbols: dict[str, int] = {}
    if proc is not None and proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TtWw":
                symbols.setdefault(parts[2], int(parts[0], 16))
    begin, end = (symbols.get(s) for s in roi_symbols)
    if begin is None or end is None:
        warnings.warn(
            f"ROI symbols {roi_symbols} not found in {path}: recording the whole program",
            stacklevel=3,
        )
        return None
    return begin, end


def trace_command_lackey(
    command: list[str] | str,
    max_loads: int | None = None,
    roi_symbols: tuple[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadStream:
    """Trace any program's loads with valgrind lackey (slow), optionally only in a ROI.

    The program sees only TRACED_PROGRAM_ENV plus env, not the caller's environment, so a trace
    does not change with the machine or the SLURM job that takes it. cwd: the folder it runs in
    (relative paths resolve there).
    """
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not argv:
        raise ValueError("empty command")
    if cwd is not None and ("/" in argv[0]) and not Path(argv[0]).is_absolute():
        argv_path = str(Path(cwd) / argv[0])
    else:
        argv_path = argv[0]
    if max_loads is not None and max_loads <= 0:
        raise ValueError(f"max_loads must be positive, not {max_loads}")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise TracingError(argv, "valgrind not found on PATH (apt-get install valgrind)")
    roi = _resolve_roi(argv_path, roi_symbols) if roi_symbols else None
    parser = _LackeyParser(roi, max_loads)
    read_fd, write_fd = os.pipe()
    # The trace goes to its own pipe (--log-fd) so the program's stdout/stderr cannot mix in.
    cmd = [valgrind, "--tool=lackey", "--trace-mem=yes", f"--log-fd={write_fd}", *argv]
    killed = False
    with tempfile.TemporaryFile() as err_file:
        try:
            proc = subprocess.Popen(
                cmd,
                pass_fds=(write_fd,),
                stdout=subprocess.DEVNULL,
                stderr=err_file,
                env={**TRACED_PROGRAM_ENV, **(env or {})},
                cwd=cwd,
            )
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            raise TracingError(cmd, f"could not start: {exc}") from exc
        os.close(write_fd)  # only the child writes; EOF arrives when it exits
        with open(read_fd, "rb", buffering=0) as pipe:
            carry = b""
            while True:
                chunk = pipe.read(_CHUNK)
                if not chunk:
                    break
                data = carry + chunk
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
        returncode = proc.wait()
        err_file.seek(0)
        stderr = err_file.read().decode(errors="replace")
    if not killed and returncode != 0:
        log = "\n".join(parser.log_tail[-20:])
        raise TracingError(cmd, _exit_cause(returncode), f"{stderr}\n{log}")
    stream = parser.result()
    if len(stream) == 0:
        where = f"between {roi_symbols[0]} and {roi_symbols[1]}" if roi else "in the program"
        raise TracingError(cmd, f"no loads recorded {where}", stderr)
    return stream
