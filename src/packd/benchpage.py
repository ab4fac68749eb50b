"""Benchmark pages: a benchmark script's printed figures, written as a Markdown page with the
command and the machine that produced them, so that no benchmark figure in docs/ is typed by
hand (`--markdown docs/benchmarks/NAME.md` on the scripts that take it)."""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from packd.atomic import write_text_atomic


def cpu_model() -> str:
    """The CPU's model name (Linux), or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """Where and when the figures were measured."""
    import torch  # only the benchmarks that write a page pay for it

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} cores of "
        f"{cpu_model()}, {cuda}; Python {platform.python_version()}, torch {torch.__version__}."
    )


def render_page(title: str, argv: Sequence[str], note: str, output: str) -> str:
    """The page: title, the exact command, the machine, a note on reading it, the output."""
    command = shlex.join(["python", *argv])
    return "\n".join(
        [
            f"# {title}",
            "",
            f"Written by `{command}` (nothing here is typed by hand). {machine_line()}",
            "",
            note,
            "",
            "```text",
            output.rstrip("\n"),
            "```",
            "",
        ]
    )


def write_page(path: str | Path, title: str, note: str, output: str) -> None:
    """render_page for this process's command line, written atomically to path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, render_page(title, sys.argv, note, output))


class _Tee(io.TextIOBase):
    """A text stream that writes to two streams."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def write(self, text: str) -> int:
        self.first.write(text)
        return self.second.write(text)

    def flush(self) -> None:
        self.first.flush()


@contextlib.contextmanager
def printed_copy() -> Iterator[io.StringIO]:
    """Print as usual inside the block, and keep a copy of it: a page for scripts that print
    their figures as they go."""
    copy = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, copy)):
        yield copy
