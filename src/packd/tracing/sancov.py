"""The SanitizerCoverage tracer: graphkernels built with clang's trace-loads, its kernel's loads.

The graph-kernel program in ``workflow/kernels`` is built with ``clang
-fsanitize-coverage=func,inline-8bit-counters,trace-loads`` and linked with a runtime (inlined
into every load site when ``llvm-link`` is present) that stores one 8-byte record (load site,
address) per load of the kernel's region of interest (ROI) into a memory-mapped file.
``instr_id`` is the load's ordinal in the ROI (``"load_ordinal"``).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from packd.tracing.common import TRACED_PROGRAM_ENV, LoadStream, TracingError, _run

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
