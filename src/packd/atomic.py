"""Atomic outputs: write to a temporary name in the target's folder, then rename over it.

A job that is interrupted or fails leaves either the old file or none, never half a file, so
Snakemake (and a user) can trust every output that exists.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside path; on success rename it to path, on failure delete it.

    suffix keeps writers that choose a format by extension (savefig, np.savez) on the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp makes 0600 files
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
