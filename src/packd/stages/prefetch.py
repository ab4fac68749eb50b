"""Prefetch stages: prefetch files of the models and classic prefetchers on an app's test range,
their LLC replay, and the table that sets coverage beside micro-F1.

With the prefetch filter on (the default), a model's candidates are all its delta bits at or
above its validation threshold, best first, and a classic prefetcher's are its own prefetches;
both pass through packd.prefetch.filter_prefetches before the file is written. With it off, a
model writes its top `degree` bits at or above the threshold and a classic prefetcher its own
prefetches, unfiltered.

Every stage reads the same stream: the test range of the trace (the accesses after warm-up and
training, split exactly as the dataset was), in order and whole, cut to its first
`max_accesses`. The dataset's test.npz cannot serve: it keeps a random subset of the samples
that have a full look-forward window, and a replay needs a decision at every access.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from packd.atomic import write_json_atomic, write_text_atomic
from packd.cache import CacheLevel, levels_from_config
from packd.dataset import (
    BLOCK_BITS,
    segment_addresses,
    split_by_instr_id,
    trace_block_addresses,
)
from packd.plan import DEFAULT_DISTANCE
from packd.prefetch import (
    Prefetches,
    classic_prefetches,
    evaluate_prefetches,
    filter_prefetches,
    limit_per_load,
    prefetches_from_scores,
    ranked_candidates,
    write_prefetch_file,
)
from packd.trace_io import read_trace_parquet

# torch, matplotlib and scipy are imported by the functions that need them: the many replay
# jobs then start in about a second instead of five.

LOG = logging.getLogger("packd")


def test_range(
    trace: pd.DataFrame, dataset_config: Mapping[str, Any], max_accesses: int | None = None
) -> pd.DataFrame:
    """The trace's test range in order (build_dataset's cap and split), its first max_accesses."""
    dataset_cap = dataset_config["max_accesses"]
    if dataset_cap and len(trace) > dataset_cap:
        trace = trace.iloc[:dataset_cap]
    split = dataset_config["split"]
    pieces = split_by_instr_id(
        trace, split["warmup"], split["train"], split["val"], split["val_blocks"]
    )
    (test,) = pieces["test"]  # the test range is one contiguous piece
    if max_accesses is not None and len(test) > max_accesses:
        test = test.iloc[:max_accesses].reset_index(drop=True)
    return test


def read_test_range(
    trace_path: str | Path, dataset_config: Mapping[str, Any], max_accesses: int | None = None
) -> pd.DataFrame:
    """test_range of the trace stored at trace_path."""
    trace, _ = read_trace_parquet(Path(trace_path))
    return test_range(trace, dataset_config, max_accesses)


def stream_samples(stream: pd.DataFrame, history: int = 10) -> dict[str, np.ndarray]:
    """Model inputs of every access of a stream that has a full history, none dropped.

    The keys of a dataset split but labels: inputs, block_addresses, pcs and deltas (history
    windows, current access last) and instr_id; row r is access r + history - 1, so the first
    history - 1 accesses have no sample (and get no prefetch).
    """
    block_addresses = trace_block_addresses(stream)
    pcs = stream["pc"].to_numpy().astype(np.uint64)
    instr_ids = stream["instr_id"].to_numpy().astype(np.uint64)
    if block_addresses.size < history:
        block_addresses = block_addresses[:0]
        pcs, instr_ids = pcs[:0], instr_ids[:0]
    address_windows = _windows(block_addresses, history)
    return {
        "inputs": segment_addresses(block_addresses, history),
        "block_addresses": address_windows,
        "pcs": _windows(pcs, history),
        "deltas": np.diff(address_windows, axis=1),
        "instr_id": instr_ids[history - 1 :],
    }


def _windows(values: np.ndarray, history: int) -> np.ndarray:
    if values.size < history:
        return np.zeros((0, history), dtype=values.dtype)
    return np.lib.stride_tricks.sliding_window_view(values, history).copy()


def model_scores(
    checkpoint_paths: Sequence[str | Path],
    samples: Mapping[str, np.ndarray],
    routes: np.ndarray,
    batch_size: int = 1024,
    device_name: str = "cpu",
) -> np.ndarray:
    """Sigmoid scores (n, bits) of each sample from its route's model (route 0: one model)."""
    from packd.networks import load_models
    from packd.stages.evaluation import model_probabilities
    from packd.train import resolve_device

    models, _ = load_models(checkpoint_paths)
    probabilities = model_probabilities(
        models, {"stream": samples}, {"stream": routes}, batch_size, resolve_device(device_name)
    )
    return probabilities["stream"]


def _llc(cache_config: Mapping[str, Any]) -> CacheLevel:
    return levels_from_config(cache_config)[-1]


def _llc_lines(stream: pd.DataFrame, llc: CacheLevel) -> np.ndarray:
    shift = np.uint64(llc.line_bytes.bit_length() - 1)
    return (stream["addr"].to_numpy().astype(np.uint64) >> shift).astype(np.int64)


def prefetch_outputs(
    report_paths: Sequence[str | Path],
    metrics_paths: Sequence[str | Path],
    csv_path: str | Path,
    markdown_path: str | Path,
    figure_path: str | Path,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """The prefetch table (CSV and Markdown) and its coverage-accuracy figure."""
    from packd.plots import plot_prefetch
    from packd.tables import prefetch_table, read_metrics, to_markdown

    table = prefetch_table(read_metrics(report_paths), read_metrics(metrics_paths))
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_text_atomic(markdown_path, to_markdown(table))
    plot_prefetch(table, Path(figure_path))
    log.info("\n%s", to_markdown(table))
    return table


@dataclass(frozen=True, kw_only=True)
class PrefetchSettings:
    """How prefetch_app scores, filters and replays: the config's `evaluate` and `train.device`
    settings as the rule passes them, built once in its script.

    degree: prefetches per load; max_accesses: the test range's first accesses replayed (None:
    all of it); device_name and batch_size: where and in what batches the models score;
    prefetch_filter and filter_window: the prefetch filter of the module docstring and its window
    in accesses (each report records both); distance: the fill distance, in LLC accesses.
    """

    degree: int
    max_accesses: int | None
    device_name: str
    prefetch_filter: bool
    filter_window: int
    distance: int = DEFAULT_DISTANCE
    batch_size: int = 1024


def _classic_file_prefetches(
    name: str,
    instr_ids: np.ndarray,
    lines: np.ndarray,
    pcs: np.ndarray,
    llc: CacheLevel,
    settings: PrefetchSettings,
) -> Prefetches:
    """A classic prefetcher's own prefetches on the stream, filtered when the filter is on."""
    degree = settings.degree
    prefetches = classic_prefetches(
        name, instr_ids, lines, pcs, degree, llc.line_bytes, settings.distance
    )
    if settings.prefetch_filter:
        prefetches = filter_prefetches(
            instr_ids, lines, prefetches, degree, settings.filter_window, llc.line_bytes
        )
    return prefetches


def _model_file_prefetches(
    scores: np.ndarray,
    samples: Mapping[str, np.ndarray],
    threshold: float,
    instr_ids: np.ndarray,
    lines: np.ndarray,
    llc: CacheLevel,
    settings: PrefetchSettings,
) -> Prefetches:
    """A model's prefetches from its scores: every bit at or above threshold, best first, through
    the filter; or, with the filter off, its top `degree` bits at or above threshold."""
    current_blocks = samples["block_addresses"][:, -1]
    if settings.prefetch_filter:
        candidates = ranked_candidates(
            scores, samples["instr_id"], current_blocks, threshold, line_bytes=1 << BLOCK_BITS
        )
        return filter_prefetches(
            instr_ids, lines, candidates, settings.degree, settings.filter_window, llc.line_bytes
        )
    return prefetches_from_scores(
        scores,
        samples["instr_id"],
        current_blocks,
        threshold,
        settings.degree,
        line_bytes=1 << BLOCK_BITS,
    )


def prefetch_app(
    trace_path: str | Path,
    dataset_config: Mapping[str, Any],
    cache_config: Mapping[str, Any],
    model_checkpoints: Mapping[str, Sequence[str | Path]],
    model_metrics: Mapping[str, str | Path],
    out_paths: Mapping[str, tuple[str | Path, str | Path]],
    centroids_path: str | Path | None = None,
    *,
    settings: PrefetchSettings,
    seed: int = 0,
    log: logging.Logger = LOG,
) -> list[dict[str, Any]]:
    """Every model's and classic prefetcher's prefetch file and replay for one app (and seed).

    Keys "arch/model" name the models (their checkpoints, metrics JSON with the validation
    threshold, and (prefetch file, replay JSON) out paths); keys "classic/name" the classic
    prefetchers. The test-range stream, the samples and the cluster routes are built once.
    centroids_path: the cluster rule's saved centroids, which route the stream's samples to the
    cluster teachers as the rule assigned the dataset's (needed only by a model with several
    checkpoints).
    """
    from packd.clustering import route_samples

    degree, distance = settings.degree, settings.distance
    stream = read_test_range(trace_path, dataset_config, settings.max_accesses)
    samples = stream_samples(stream, dataset_config["history"])
    llc = _llc(cache_config)
    lines = _llc_lines(stream, llc)
    instr_ids = stream["instr_id"].to_numpy()
    routes = None
    reports = []
    for key, (prefetch_path, report_path) in out_paths.items():
        source, name = key.split("/")
        if source == "classic":
            prefetches = _classic_file_prefetches(
                name, instr_ids, lines, stream["pc"].to_numpy(), llc, settings
            )
        else:
            checkpoints = model_checkpoints[key]
            model_routes = np.zeros(len(samples["instr_id"]), np.int64)
            if len(checkpoints) > 1:
                if centroids_path is None:
                    raise ValueError(f"{key}: several checkpoints need the cluster centroids")
                if routes is None:
                    routes = route_samples(centroids_path, samples)
                model_routes = routes
            threshold = float(json.loads(Path(model_metrics[key]).read_text())["threshold"])
            scores = model_scores(
                checkpoints, samples, model_routes, settings.batch_size, settings.device_name
            )
            prefetches = _model_file_prefetches(
                scores, samples, threshold, instr_ids, lines, llc, settings
            )
        prefetches = limit_per_load(prefetches, degree)
        write_prefetch_file(prefetch_path, prefetches)
        report = evaluate_prefetches(instr_ids, lines, prefetches, llc, distance)
        app = Path(trace_path).stem
        result = {
            "seed": seed,
            "app": app,
            "source": source,
            "name": name,
            "degree": degree,
            "distance": distance,
            "filter": bool(settings.prefetch_filter),
            "filter_window": int(settings.filter_window) if settings.prefetch_filter else None,
            "accesses": len(stream),
            **report.as_dict(),
        }
        write_json_atomic(report_path, result)
        log.info(
            "%s: %d prefetches (%d filled, %d redundant, %d late), accuracy %.4f, coverage %.4f, "
            "miss reduction %.4f",
            key,
            len(prefetches),
            report.filled,
            report.redundant,
            report.late,
            report.accuracy,
            report.coverage,
            report.miss_reduction,
        )
        reports.append(result)
    return reports
