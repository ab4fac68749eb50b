"""Evaluation stage: score one model (or the routed cluster teachers) on test."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from packd.atomic import write_json_atomic
from packd.cell import Cell
from packd.clustering import load_cluster_ids
from packd.dataset import load_split
from packd.distill import teacher_soft_logits
from packd.metrics import (
    authors_protocol,
    frequency_top_k,
    latency_per_sample,
    protocol_metrics,
)
from packd.models import count_parameters, model_bytes
from packd.networks import load_models
from packd.train import resolve_device

LOG = logging.getLogger("packd")


def model_probabilities(
    models: Mapping[int, torch.nn.Module],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    routes: Mapping[str, np.ndarray],
    batch_size: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Sigmoid scores of every sample of every split, each from its route's model."""
    probabilities = {}
    for name, arrays in splits.items():
        logits = teacher_soft_logits(models, arrays["inputs"], routes[name], batch_size, device)
        probabilities[name] = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)))
    return probabilities


def evaluate(
    cell: Cell,
    split_paths: Mapping[str, str | Path],
    checkpoint_paths: Sequence[str | Path],
    out_path: str | Path,
    model_name: str,
    clusters_path: str | Path | None = None,
    *,
    latency_repeats: int,
    device_name: str,
    degree: int,
    batch_size: int = 1024,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Score one model of the cell (or the routed cluster teachers) on test at the validation
    threshold."""
    return evaluate_cell(
        cell,
        split_paths,
        {model_name: list(checkpoint_paths)},
        {model_name: out_path},
        clusters_path,
        latency_repeats=latency_repeats,
        device_name=device_name,
        degree=degree,
        batch_size=batch_size,
        log=log,
    )[model_name]


def evaluate_cell(
    cell: Cell,
    split_paths: Mapping[str, str | Path],
    checkpoints_by_model: Mapping[str, Sequence[str | Path]],
    out_paths: Mapping[str, str | Path],
    clusters_path: str | Path | None = None,
    *,
    latency_repeats: int,
    device_name: str,
    degree: int,
    batch_size: int = 1024,
    log: logging.Logger = LOG,
) -> dict[str, dict[str, Any]]:
    """Score every model of one (seed, app, arch) cell on the same data, loaded once.

    A model with several checkpoints (the cluster teachers) scores each sample with the model of
    its cluster (clusters_path); a single checkpoint scores every sample. With a "train" split,
    each model's test top-`degree` bits are also compared with the bit-frequency baseline's
    (the `degree` bits most often set in the training labels): a model collapsed to the label
    prior issues those same bits for every sample.
    """
    device = resolve_device(device_name)
    splits = {name: load_split(Path(split_paths[name])) for name in ("val", "test")}
    frequency_bits = None
    if "train" in split_paths:
        frequency_bits = frequency_top_k(load_split(Path(split_paths["train"]))["labels"], degree)
        log.info(
            "%s/%s: the bit-frequency baseline's top-%d bits: %s",
            cell.app,
            cell.arch,
            degree,
            frequency_bits.tolist(),
        )
    cluster_routes = load_cluster_ids(clusters_path) if clusters_path is not None else None
    single_routes = {
        name: np.zeros(len(arrays["labels"]), np.int64) for name, arrays in splits.items()
    }
    results = {}
    for model_name, checkpoint_paths in checkpoints_by_model.items():
        models, headers = load_models(checkpoint_paths)
        routes = cluster_routes if len(checkpoint_paths) > 1 else single_routes
        if routes is None:
            raise ValueError(f"{model_name}: several checkpoints need the cluster assignments")
        probabilities = model_probabilities(models, splits, routes, batch_size, device)
        metrics = score_model(
            models, headers, probabilities, splits, degree, latency_repeats, log, frequency_bits
        )
        metrics = {
            "app": cell.app,
            "arch": cell.arch,
            "method": model_name,
            "seed": cell.seed,
            **metrics,
        }
        log.info(
            "%s/%s/%s: test F1 %.4f at validation threshold %.3f (authors' protocol %.4f)",
            cell.app,
            cell.arch,
            model_name,
            metrics["f1"],
            metrics["threshold"],
            metrics["test_selected_f1"],
        )
        if "top_k_differs_from_frequency" in metrics:
            log.info(
                "%s/%s/%s: top-%d bits differ from the bit-frequency baseline's on %d of %d test "
                "samples (%.1f%%)",
                cell.app,
                cell.arch,
                model_name,
                degree,
                metrics["top_k_differs_from_frequency_count"],
                metrics["test_samples"],
                100 * metrics["top_k_differs_from_frequency"],
            )
        write_json_atomic(out_paths[model_name], metrics)
        results[model_name] = metrics
    return results


def score_model(
    models: Mapping[int, torch.nn.Module],
    headers: Sequence[Mapping[str, Any]],
    probabilities: Mapping[str, np.ndarray],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    degree: int,
    latency_repeats: int,
    log: logging.Logger = LOG,
    frequency_bits: np.ndarray | None = None,
) -> dict[str, Any]:
    """Both protocols' metrics, size and CPU latency of one model from its scores (and how often
    its top-k differs from frequency_bits, the bit-frequency baseline's, when given)."""
    test_labels = splits["test"]["labels"]
    scores = protocol_metrics(
        splits["val"]["labels"],
        probabilities["val"],
        test_labels,
        probabilities["test"],
        degree,
        frequency_bits,
    )
    selected = [key for key in scores if key.startswith("test_selected_")]
    history = headers[0].get("history", []) if len(headers) == 1 else []
    scores.update(authors_protocol(history, {key: scores[key] for key in selected}))
    metrics: dict[str, Any] = {
        **scores,
        "params": sum(count_parameters(model) for model in models.values()),
        "bytes": sum(model_bytes(model) for model in models.values()),
        "test_samples": len(test_labels),
        "trained_on": sorted({header.get("device", "unknown") for header in headers}),
        "histories": [header.get("history", []) for header in headers],
        "best_epochs": [header.get("best_epoch") for header in headers],
    }
    # Routed teachers run one model per sample, and all have one architecture: the first's
    # latency is theirs. A batch of 1024 is timed 3 times after 1 warm-up (each run is long).
    cpu = torch.device("cpu")
    timed_model = next(iter(models.values()))
    for batch, repeats, warmup in ((1, latency_repeats, 3), (1024, 3, 1)):
        metrics[f"latency_b{batch}_s"] = latency_per_sample(
            timed_model, batch, repeats, cpu, warmup
        )
    return metrics
