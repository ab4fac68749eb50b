"""Dataset and cluster stages: an app's trace into split arrays, and k-means over the samples."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from packd.atomic import write_json_atomic, write_parquet_atomic, write_text_atomic
from packd.clustering import (
    cluster_assignments,
    cluster_features,
    cluster_sizes,
    fit_clusters,
    save_centroids,
)
from packd.dataset import (
    SPLIT_NAMES,
    build_pieces_arrays,
    load_split,
    save_split,
    split_by_instr_id,
    subsample_split,
)
from packd.plots import plot_cluster_sizes
from packd.trace_io import read_trace_parquet

LOG = logging.getLogger("packd")


def build_dataset(
    trace_path: str | Path,
    dataset_config: Mapping[str, Any],
    split_paths: Mapping[str, str | Path],
    sizes_path: str | Path,
    seed: int = 0,
    log: logging.Logger = LOG,
) -> dict[str, int]:
    """Split one app's trace by instr_id and write inputs, labels and clustering features."""
    trace, _ = read_trace_parquet(Path(trace_path))
    max_accesses = dataset_config["max_accesses"]
    if max_accesses and len(trace) > max_accesses:
        log.info("keeping the first %d of %d LLC accesses", max_accesses, len(trace))
        trace = trace.iloc[:max_accesses]
    split = dataset_config["split"]
    segments = split_by_instr_id(
        trace, split["warmup"], split["train"], split["val"], split["val_blocks"]
    )
    sizes = {}
    for name, pieces in segments.items():
        arrays = build_pieces_arrays(
            pieces,
            history=dataset_config["history"],
            look_forward=dataset_config["look_forward"],
            delta_bound=dataset_config["delta_bound"],
            label_offset=dataset_config["label_offset"],
        )
        if len(arrays["labels"]) == 0:
            raise ValueError(f"{trace_path}: the {name} split has no sample with an in-range delta")
        limit = dataset_config["max_samples"][name]
        if limit and len(arrays["labels"]) > limit:
            log.info(
                "%s: keeping %d of %d samples, drawn at random", name, limit, len(arrays["labels"])
            )
            arrays = subsample_split(arrays, limit, seed, SPLIT_NAMES.index(name))
        sizes[name] = len(arrays["labels"])
        log.info(
            "%s: %d accesses in %d piece(s) -> %d samples, %.2f label bits set on average",
            name,
            sum(len(piece) for piece in pieces),
            len(pieces),
            sizes[name],
            arrays["labels"].sum(axis=1).mean(),
        )
        save_split(Path(split_paths[name]), arrays)
    write_json_atomic(sizes_path, sizes)
    return sizes


def cluster(
    split_paths: Mapping[str, str | Path],
    features: str,
    k: int,
    seed: int,
    n_init: int,
    min_cluster_fraction: float,
    assignments_path: str | Path,
    centroids_path: str | Path,
    sizes_path: str | Path,
    figure_path: str | Path,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """Fit k-means on the training samples' features, assign every sample of every split and
    save the centroids (packd.clustering.save_centroids) that route any other sample."""
    features_by_split = {
        name: cluster_features(load_split(Path(path)), features)
        for name, path in split_paths.items()
    }
    model = fit_clusters(
        features_by_split["train"],
        k=k,
        seed=seed,
        n_init=n_init,
        min_cluster_fraction=min_cluster_fraction,
    )
    for event in model.events:
        log.warning("%s", event)
    assignments = cluster_assignments(model, features_by_split)
    sizes = cluster_sizes(assignments, k)
    log.info("cluster sizes:\n%s", sizes.to_string())
    write_parquet_atomic(assignments, assignments_path)
    save_centroids(centroids_path, model, features)
    write_text_atomic(sizes_path, sizes.reset_index().to_csv(index=False))
    plot_cluster_sizes(
        sizes,
        title=f"{Path(assignments_path).parent.name}: {features}, k={k}",
        path=Path(figure_path),
    )
    return assignments
