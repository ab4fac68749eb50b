"""Atomic outputs: whole or absent, never half-written, and no temporary file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from packd.atomic import atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("the job failed")
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["table.csv"]


def test_a_write_killed_by_sigkill_leaves_a_temporary_that_the_next_write_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "main.csv"
    neighbour = tmp_path / "main.csv.md"  # its temporaries must survive main.csv's clean-up
    script = (
        "import time, sys\n"
        "from packd.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as t:\n"
        "    t.write_text('half'); print('writing', flush=True); time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    left = sorted(path.name for path in tmp_path.iterdir())
    assert len(left) == 1 and left[0].startswith(".main.csv.tmp-") and not target.exists()
    other = tmp_path / ".main.csv.md.tmp-abc"
    other.write_text("a neighbour's temporary")
    write_text_atomic(target, "whole\n")
    assert target.read_text() == "whole\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == [".main.csv.md.tmp-abc", "main.csv"]
    assert not neighbour.exists()
