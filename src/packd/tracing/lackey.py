"""The valgrind lackey tracer: any binary's loads, no recompiling, ~100x slower than sancov.

``instr_id`` is a true instruction count (``"instruction_count"``). A ROI is given by two
function symbols (see packd.tracing.elf); docs/tracing.md describes the ROI, environment,
reproducibility and cost.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from packd.tracing.common import TRACED_PROGRAM_ENV, LoadStream, TracingError, _exit_cause
from packd.tracing.elf import (
    _INLINING_HINT,
    FunctionSymbol,
    _check_called,
    _describe,
    _elf_type,
    find_function,
    function_symbols,
)
from packd.tracing.lackey_parser import _TAIL_LINES, _LackeyParser

# Where valgrind 3.x maps a PIE main program on amd64 when /proc cannot tell (see _load_base).
_VALGRIND_PIE_BASE = 0x108000
_MAPS_WAIT_S = 30.0  # longest wait for valgrind to map the program (it takes ~0.1 s)
_PIPE_BYTES = 1 << 20
# Defaults of the traced program's environment on the lackey path, below the app's env: an
# OpenMP program traced with one thread per core of the machine would vary with the machine.
LACKEY_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1"}
_TAIL_BYTES = 1 << 16  # only the end of a program's output file is read back
_CHUNK = 4 << 20  # bytes per parse step: large enough for numpy, small enough to stay in cache


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
        offset = 0
        if self.pie:
            assert self.base is not None, "a PIE's load base is set before its addresses are read"
            offset = self.base
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
