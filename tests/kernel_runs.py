"""Runs of the graph-kernel program for tests and benchmarks: its facts, answers and graph."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from packd.tracing.common import _run
from packd.tracing.sancov import _stderr_info, kernel_arguments


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
