"""Real memory-load traces of executed programs: the public entry points of both tracers.

Two backends give a :class:`LoadStream` (one row per executed load, in program order):

* SanitizerCoverage (:mod:`packd.tracing.sancov`: ``compile_kernel``, ``trace_kernel``): the
  graph kernels of ``workflow/kernels`` built with clang's trace-loads. Fast; ``instr_id`` is the
  load's ordinal in the kernel's region of interest (ROI) (``"load_ordinal"``).
* valgrind lackey (:mod:`packd.tracing.lackey`: ``trace_command_lackey``): any binary, no
  recompiling, ~100x slower; ``instr_id`` is a true instruction count (``"instruction_count"``).
  Its ROI's functions are found among the binary's symbols (:mod:`packd.tracing.elf`), its
  output read by :mod:`packd.tracing.lackey_parser`. docs/tracing.md describes its ROI,
  environment, reproducibility and cost.

:mod:`packd.tracing.common` holds what both share: LoadStream, TracingError, running a command.
"""

from packd.tracing.common import TRACED_PROGRAM_ENV, LoadStream, TracingError
from packd.tracing.elf import FunctionSymbol, find_function, function_symbols
from packd.tracing.lackey import (
    LACKEY_ENV_DEFAULTS,
    resolve_command,
    trace_command_lackey,
    valgrind_version,
)
from packd.tracing.sancov import (
    GRAPHS,
    KERNELS,
    RECORD_DTYPE,
    SANCOV_FLAGS,
    compile_kernel,
    decode_records,
    kernel_arguments,
    trace_kernel,
)

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
    "compile_kernel",
    "decode_records",
    "find_function",
    "function_symbols",
    "kernel_arguments",
    "resolve_command",
    "trace_command_lackey",
    "trace_kernel",
    "valgrind_version",
]
