"""Atomic outputs: write to a temporary name in the target's folder, then rename over it.

A job that is interrupted or fails leaves either the old file or none, never half a file, so
Snakemake (and a user) can trust every output that exists.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas costs a training job 0.35 s of start-up; it only passes frames through
    import pandas as pd


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside path; on success rename it to path, on failure delete it.

    suffix keeps writers that choose a format by extension (savefig, np.savez) on the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    # A write cut off by SIGKILL leaves its temporary file behind; the next write of the same
    # path (one job writes it at a time) removes it.
    for stale in path.parent.glob(f"{glob.escape(prefix)}*"):
        stale.unlink(missing_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp makes 0600 files
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def write_json_atomic(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write JSON (sorted keys, numpy values as Python ones) atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_parquet_atomic(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as Parquet (no index) atomically."""
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)
