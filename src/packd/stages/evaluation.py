"""Evaluation stage: score one model (or the routed cluster teachers) on test."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from packd.atomic import write_json_atomic, write_npz_atomic
from packd.checkpoint import load_models
from packd.clustering import load_cluster_ids
from packd.dataset import load_split
from packd.distill import teacher_soft_logits
from packd.metrics import latency_per_sample, protocol_metrics, sample_counts
from packd.models import count_parameters, model_bytes
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
    split_paths: Mapping[str, str | Path],
    checkpoint_paths: Sequence[str | Path],
    out_path: str | Path,
    app: str,
    arch: str,
    model_name: str,
    clusters_path: str | Path | None = None,
    counts_path: str | Path | None = None,
    latency_repeats: int = 200,
    batch_size: int = 1024,
    device_name: str = "auto",
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Score one model (or the routed cluster teachers) on test at the validation threshold."""
    device = resolve_device(device_name)
    splits = {name: load_split(Path(split_paths[name])) for name in ("val", "test")}
    if clusters_path is not None:
        routes = load_cluster_ids(clusters_path)
    else:
        routes = {
            name: np.zeros(len(arrays["labels"]), np.int64) for name, arrays in splits.items()
        }
    models, headers = load_models(checkpoint_paths)
    probabilities = model_probabilities(models, splits, routes, batch_size, device)
    test_labels = splits["test"]["labels"]
    scores = protocol_metrics(
        splits["val"]["labels"], probabilities["val"], test_labels, probabilities["test"]
    )
    if counts_path is not None:
        predicted = probabilities["test"] >= scores["threshold"]
        write_npz_atomic(counts_path, counts=sample_counts(test_labels, predicted))
    if len(headers) == 1:
        history_test = [epoch.get("test_f1") for epoch in headers[0].get("history", [])]
        history_test = [value for value in history_test if value is not None]
        if history_test:
            scores["test_selected_f1"] = max(scores["test_selected_f1"], max(history_test))
    metrics: dict[str, Any] = {
        "app": app,
        "arch": arch,
        "method": model_name,
        **scores,
        "params": sum(count_parameters(model) for model in models.values()),
        "bytes": sum(model_bytes(model) for model in models.values()),
        "test_samples": len(test_labels),
        "trained_on": sorted({header.get("device", "unknown") for header in headers}),
        "histories": [header.get("history", []) for header in headers],
        "best_epochs": [header.get("best_epoch") for header in headers],
    }
    # Routed teachers run one model per sample: their latency is the mean of the teachers'.
    cpu = torch.device("cpu")
    for batch, repeats in ((1, latency_repeats), (1024, 5)):
        metrics[f"latency_b{batch}_s"] = float(
            np.mean([latency_per_sample(model, batch, repeats, cpu) for model in models.values()])
        )
    log.info(
        "%s/%s/%s: test F1 %.4f at validation threshold %.3f (F1@0.5 %.4f; authors' protocol %.4f)",
        app,
        arch,
        model_name,
        metrics["f1"],
        metrics["threshold"],
        metrics["f1_at_0.5"],
        metrics["test_selected_f1"],
    )
    write_json_atomic(out_path, metrics)
    return metrics
