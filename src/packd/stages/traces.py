"""Trace stage: build the kernels, trace an app or import its trace, summarise the traces."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from packd import __version__
from packd import tracing as tracer
from packd.atomic import write_json_atomic, write_text_atomic
from packd.cache import levels_from_config, llc_trace_from_loads
from packd.trace_io import (
    parse_load_trace,
    read_trace_parquet,
    summarize_trace,
    write_trace_parquet,
)

LOG = logging.getLogger("packd")


def build_kernel(kernel_dir: str | Path, binary: str | Path, versions: str | Path, variant: str):
    """Compile the graph kernels, instrumented for sancov or plain (for lackey and timing)."""
    tool_versions = tracer.compile_kernel(
        Path(kernel_dir), Path(binary), instrumented=variant == "sancov"
    )
    write_json_atomic(versions, {"variant": variant, **tool_versions})


def trace_app(
    source: Mapping[str, Any],
    tracing: Mapping[str, Any],
    cache_config: Mapping[str, Any],
    binary: str | None,
    out_path: str | Path,
    versions: str | Path | None = None,
    command_dir: str | Path | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Trace one app's loads, keep those that reach the LLC, and write the Parquet trace."""
    max_loads = tracing["max_loads"]
    metadata: dict[str, Any] = {"packd_version": __version__}
    if "kernel" in source:
        if binary is None:
            raise ValueError(f"a kernel app ({source['kernel']}) needs its built binary")
        kernel_args = {key: source[key] for key in ("kernel", "graph", "scale", "degree")}
        kernel_args["seed"] = source.get("seed", 1)
        trials = source.get("trials", 1)
        trial_args = ("--trials", str(trials))
        metadata.update(source="kernel", **kernel_args, trials=trials, backend=tracing["backend"])
        if versions is not None:
            metadata["tool_versions"] = json.loads(Path(versions).read_text())
        log.info(
            "tracing %s, %d trial(s), with %s (max %s loads)",
            kernel_args,
            trials,
            tracing["backend"],
            max_loads,
        )
        if tracing["backend"] == "sancov":
            loads = tracer.trace_kernel(
                Path(binary), **kernel_args, max_loads=max_loads, extra_args=trial_args
            )
        else:
            # `./name` from the binary's folder, as trace_kernel does: argv[0] is on the stack.
            command = [
                f"./{Path(binary).name}",
                *tracer.kernel_arguments(**kernel_args),
                *trial_args,
            ]
            loads = tracer.trace_command_lackey(
                command,
                max_loads=max_loads,
                roi_symbols=("roi_begin", "roi_end"),
                cwd=Path(binary).resolve().parent,
            )
    else:
        metadata.update(
            source="command",
            command=source["command"],
            env=dict(source.get("env", {})),
            backend="lackey",
        )
        roi = tuple(source["roi"]) if "roi" in source else None
        log.info("tracing command %r with valgrind lackey", source["command"])
        loads = tracer.trace_command_lackey(
            source["command"],
            max_loads=max_loads,
            roi_symbols=roi,
            env=source.get("env"),
            cwd=Path(command_dir) if command_dir else None,
        )
    log.info("recorded %d loads (%d distinct pcs)", len(loads.addr), len(np.unique(loads.pc)))
    metadata.update(loads.metadata)
    levels = levels_from_config(cache_config)
    memory_latency = cache_config["memory_latency"]
    trace = llc_trace_from_loads(loads.instr_id, loads.pc, loads.addr, levels, memory_latency)
    log.info(
        "%d accesses reach the LLC (%.1f%% of loads)",
        len(trace),
        100 * len(trace) / max(1, len(loads.addr)),
    )
    metadata.update(
        loads_traced=len(loads.addr),
        instr_id_kind=loads.instr_id_kind,
        cycle_kind=(
            "modelled: in-order estimate, each load costs 1 cycle plus the latency of the level "
            "that served it"
        ),
        cache={"levels": [level.__dict__ for level in levels], "memory_latency": memory_latency},
    )
    write_trace_parquet(trace, Path(out_path), metadata)


def import_trace(in_path: str | Path, out_path: str | Path, log: logging.Logger = LOG) -> None:
    """Convert a user's ML-DPC load trace (.txt or .txt.xz) to the project's Parquet trace."""
    trace = parse_load_trace(Path(in_path))
    log.info("parsed %d accesses from %s", len(trace), in_path)
    metadata = {
        "source": "import",
        "path": str(in_path),
        "cycle_kind": "as recorded by the simulator that wrote the trace",
        "instr_id_kind": "instruction_count",
        "packd_version": __version__,
    }
    write_trace_parquet(trace, Path(out_path), metadata)


def summarize_traces(trace_paths: Sequence[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """One row per app: accesses, LLC misses, distinct pcs, pages and lines, and provenance."""
    rows = []
    for path in trace_paths:
        trace, metadata = read_trace_parquet(Path(path))
        rows.append(
            {
                "app": Path(path).stem,
                **summarize_trace(trace),
                "source": metadata.get("source"),
                "instr_id_kind": metadata.get("instr_id_kind"),
            }
        )
    summary = pd.DataFrame(rows)
    write_text_atomic(out_csv, summary.to_csv(index=False))
    return summary
