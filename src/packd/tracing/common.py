"""What both tracers share: the LoadStream they return, the error they raise, and running a
command whose failure is quoted in that error."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
        command: Sequence[str | Path] | str,
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
    cmd: Sequence[str | Path],
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
