"""Training stages: teachers (one per cluster, and one for the whole app) and students."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packd.checkpoint import checkpoint_header, load_models, save_checkpoint
from packd.clustering import cluster_splits, load_cluster_ids
from packd.dataset import SPLIT_NAMES, load_split
from packd.distill import teacher_soft_logits
from packd.models import build_model, count_parameters
from packd.train import PhaseSettings, resolve_device, seed_everything, train_phase

LOG = logging.getLogger("packd")


def load_splits(split_paths: Mapping[str, str | Path]) -> dict[str, dict[str, np.ndarray]]:
    """The train, val and test arrays of one app."""
    return {name: load_split(Path(split_paths[name])) for name in SPLIT_NAMES}


def train_teacher(
    split_paths: Mapping[str, str | Path],
    arch: str,
    size: Mapping[str, Any],
    train_config: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    clusters_path: str | Path | None = None,
    cluster_id: int | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Train one teacher on one cluster's samples (or the whole app) and save its checkpoint."""
    splits = load_splits(split_paths)
    fields: dict[str, Any] = {}
    if clusters_path is not None:
        fields["cluster"] = cluster_id
        splits, small = cluster_splits(splits, load_cluster_ids(clusters_path), cluster_id)
        if small:
            log.warning(
                "cluster %d has %d validation samples (too few): validating on the whole split",
                cluster_id,
                int(np.count_nonzero(load_cluster_ids(clusters_path)["val"] == cluster_id)),
            )
    n_train = len(splits["train"]["labels"])
    if n_train == 0:
        # The cluster was merged away (see the cluster log): no sample is routed to it.
        log.warning("cluster %s has no training samples: writing an empty teacher", cluster_id)
        header = checkpoint_header(None, arch, size, "teacher", app, **fields, empty=True)
        save_checkpoint(Path(checkpoint_path), {}, header)
        return
    seed_everything(seed)
    model = build_model(arch, size)
    log.info(
        "%s teacher %s: %d parameters, %d training samples",
        arch,
        dict(size),
        count_parameters(model),
        n_train,
    )
    result = train_phase(
        model,
        (splits["train"]["inputs"], splits["train"]["labels"]),
        splits,
        PhaseSettings.from_config(train_config, "teacher", arch),
        loss="bce",
        seed=seed,
        log=log.info,
    )
    header = checkpoint_header(
        model,
        arch,
        size,
        "teacher",
        app,
        **fields,
        train_samples=n_train,
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)


def soft_target_routes(
    soft_targets: str, n_samples: int, clusters_path: str | Path | None
) -> np.ndarray:
    """Which teacher labels each training sample: its cluster's (PaCKD) or teacher 0 (one
    whole-app teacher)."""
    if soft_targets == "cluster_teachers":
        if clusters_path is None:
            raise ValueError("cluster-teacher soft targets need the cluster assignments")
        return load_cluster_ids(clusters_path)["train"]
    return np.zeros(n_samples, dtype=np.int64)


def train_student(
    split_paths: Mapping[str, str | Path],
    arch: str,
    size: Mapping[str, Any],
    settings: Mapping[str, Any],
    train_config: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    method: str,
    teacher_paths: Sequence[str | Path] = (),
    clusters_path: str | Path | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Train one student method (settings from packd.methods.method_settings): on labels only,
    or distilled from the teachers its soft targets come from."""
    splits = load_splits(split_paths)
    train_inputs, train_labels = splits["train"]["inputs"], splits["train"]["labels"]
    if settings["soft_targets"] is None:
        loss: Any = "bce"
        train_data: tuple = (train_inputs, train_labels)
    else:
        teachers, _ = load_models(teacher_paths)
        routes = soft_target_routes(settings["soft_targets"], len(train_labels), clusters_path)
        missing = sorted(set(np.unique(routes).tolist()) - set(teachers))
        if missing:
            raise ValueError(f"{method}: samples routed to clusters without a teacher: {missing}")
        log.info(
            "computing soft targets of %d teacher(s) for %d samples",
            len(teachers),
            len(train_labels),
        )
        device = resolve_device(train_config.get("device", "auto"))
        soft_logits = teacher_soft_logits(
            teachers, train_inputs, routes, batch_size=1024, device=device
        )
        loss = ("kd", settings["alpha"], settings["temperature"])
        train_data = (train_inputs, train_labels, soft_logits)
    seed_everything(seed)
    model = build_model(arch, size)
    log.info("%s student %s (%s): %d parameters", arch, dict(size), method, count_parameters(model))
    result = train_phase(
        model,
        train_data,
        splits,
        PhaseSettings.from_config(train_config, "student", arch),
        loss=loss,
        seed=seed,
        log=log.info,
    )
    header = checkpoint_header(
        model,
        arch,
        size,
        "student",
        app,
        method=method,
        settings=dict(settings),
        train_samples=len(train_labels),
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)
