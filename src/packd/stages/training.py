"""Training stages: teachers (one per cluster, and one for the whole app) and students."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packd.atomic import write_json_atomic
from packd.cell import Cell
from packd.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from packd.clustering import cluster_splits, load_cluster_ids
from packd.dataset import SPLIT_NAMES, load_split
from packd.distill import teacher_soft_logits
from packd.kd_settings import KDSettings
from packd.methods import settings_record
from packd.models import count_parameters
from packd.networks import (
    NetworkCell,
    build_network,
    load_models,
    network_named,
    parameters_of,
)
from packd.plan import replacement_size_of
from packd.train import PhaseSettings, resolve_device, seed_everything, train_phase

LOG = logging.getLogger("packd")


def load_splits(split_paths: Mapping[str, str | Path]) -> dict[str, dict[str, np.ndarray]]:
    """The train, val and test arrays of one app."""
    return {name: load_split(Path(split_paths[name])) for name in SPLIT_NAMES}


CLUSTER_TEACHER_INITS = ("warm_start", "scratch")


def cluster_teacher_phase(
    settings: PhaseSettings,
    cluster_config: Mapping[str, Any],
    n_cluster: int,
    n_app: int,
) -> tuple[PhaseSettings, bool]:
    """A cluster teacher's phase and whether it starts from the whole-app teacher.

    warm_start: the whole-app teacher fine-tuned on its cluster for `epochs` at `lr_factor`
    times the teacher's rate, the warm start itself kept when no epoch beats it on the
    cluster's validation samples. scratch (the authors' way): the teacher's epochs scaled by
    n_app / n_cluster, so that it takes as many optimiser steps as the whole-app teacher.
    """
    init = cluster_config["init"]
    if init not in CLUSTER_TEACHER_INITS:
        raise ValueError(f"unknown cluster-teacher init {init!r}; valid: {CLUSTER_TEACHER_INITS}")
    if init == "warm_start":
        fine_tune = dataclasses.replace(
            settings,
            epochs=int(cluster_config["epochs"]),
            lr=settings.lr * float(cluster_config["lr_factor"]),
            min_epochs=1,
        )
        return fine_tune, True
    epochs = math.ceil(settings.epochs * n_app / max(n_cluster, 1))
    return dataclasses.replace(settings, epochs=epochs), False


def train_teacher(
    cell: Cell,
    split_paths: Mapping[str, str | Path],
    size: Mapping[str, Any],
    train_config: Mapping[str, Any],
    checkpoint_path: str | Path,
    clusters_path: str | Path | None = None,
    cluster_id: int | None = None,
    lr_factor: float | None = None,
    selection_path: str | Path | None = None,
    whole_app_teacher_path: str | Path | None = None,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Train the cell's teacher on one cluster's samples (or the whole app), save its checkpoint
    and return the checkpoint's header.

    The learning rate is the arch's teacher rate times lr_factor, or times the factor chosen for
    the whole-app teacher (selection_path, written by select_teacher or replicate_teacher). A
    cluster teacher follows train.cluster_teachers (cluster_teacher_phase): warm-started from
    whole_app_teacher_path, or from scratch."""
    if lr_factor is None:
        lr_factor = 1.0
        if selection_path is not None:
            lr_factor = json.loads(Path(selection_path).read_text())["lr_factor"]
    splits = load_splits(split_paths)
    n_app = len(splits["train"]["labels"])
    fields: dict[str, Any] = {"lr_factor": lr_factor}
    if clusters_path is not None:
        assert cluster_id is not None, "a cluster teacher is trained with its cluster_id"
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
        header = checkpoint_header(None, cell.arch, size, "teacher", cell.app, **fields, empty=True)
        save_checkpoint(Path(checkpoint_path), {}, header)
        return header
    seed_everything(cell.seed)
    network_cell = NetworkCell(arch=cell.arch, sizes={"teacher": size}, seed=cell.seed)
    model, _ = build_network("teacher", network_cell)
    settings = PhaseSettings.from_config(train_config, "teacher", cell.arch)
    settings = dataclasses.replace(settings, lr=settings.lr * lr_factor)
    warm_start = False
    if clusters_path is not None:
        settings, warm_start = cluster_teacher_phase(
            settings, train_config["cluster_teachers"], n_train, n_app
        )
        fields["init"] = "warm_start" if warm_start else "scratch"
        if warm_start:
            if whole_app_teacher_path is None:
                raise ValueError("a warm-started cluster teacher needs the whole-app teacher")
            _, state = load_checkpoint(Path(whole_app_teacher_path))
            model.load_state_dict(state)
    log.info(
        "%s teacher %s: %d parameters, %d training samples, %s, %d epochs at lr %g",
        cell.arch,
        dict(size),
        count_parameters(model),
        n_train,
        "warm start from the whole-app teacher" if warm_start else "from scratch",
        settings.epochs,
        settings.lr,
    )
    result = train_phase(
        model,
        (splits["train"]["inputs"], splits["train"]["labels"]),
        splits,
        settings,
        kd=None,
        seed=cell.seed,
        log=log.info,
        initial_candidate=warm_start,
    )
    header = checkpoint_header(
        model,
        cell.arch,
        size,
        "teacher",
        cell.app,
        **fields,
        train_samples=n_train,
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)
    return header


def _selection_candidate(header: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """A training run as the selection records it: its factor and best validation F1 (None for
    a model that trains nothing, such as the bit-frequency baseline: it has no epoch)."""
    best = max((record["val_f1"] for record in header["history"]), default=None)
    return {"lr_factor": float(header["lr_factor"]), "val_f1": best, "path": str(path)}


def _validation_f1(candidate: Mapping[str, Any]) -> float:
    """The F1 a candidate is chosen by; one that trained nothing ranks last."""
    return float("-inf") if candidate["val_f1"] is None else float(candidate["val_f1"])


def _write_selection(
    path: str | Path, chosen: Mapping[str, Any], candidates: list[dict], **fields: Any
) -> dict[str, Any]:
    selection = {
        "lr_factor": chosen["lr_factor"],
        "val_f1": chosen["val_f1"],
        "candidates": candidates,
        **fields,
    }
    write_json_atomic(path, selection)
    return selection


def select_candidate(
    candidate_paths: Sequence[str | Path],
    factors: Sequence[float],
    checkpoint_path: str | Path,
    selection_path: str | Path,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Copy the learning-rate candidate with the best validation F1 (of a whole-app teacher or
    of any trained method) to the model's checkpoint and record the choice (every candidate's
    validation F1 and the chosen learning-rate factor). Ties go to the first factor."""
    candidates = []
    for path, factor in zip(candidate_paths, factors, strict=True):
        header, state = load_checkpoint(Path(path))
        candidate = {**_selection_candidate(header, path), "lr_factor": float(factor)}
        candidates.append(candidate)
        f1 = candidate["val_f1"]
        log.info(
            "candidate lr x%g: best validation F1 %s",
            factor,
            "none (it trains nothing)" if f1 is None else f"{f1:.4f}",
        )
    chosen = max(candidates, key=_validation_f1)
    header, state = load_checkpoint(Path(chosen["path"]))
    save_checkpoint(Path(checkpoint_path), state, header)
    log.info("chose lr x%g", chosen["lr_factor"])
    return _write_selection(selection_path, chosen, candidates)


def replicate_teacher(
    cell: Cell,
    split_paths: Mapping[str, str | Path],
    size: Mapping[str, Any],
    train_config: Mapping[str, Any],
    checkpoint_path: str | Path,
    selection_path: str | Path,
    chosen_selection_path: str | Path,
    chosen_on_seed: int,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """The whole-app teacher of a later seed's cell: trained at the learning-rate factor chosen
    on the first seed's validation (chosen_selection_path), recorded as this seed's selection.

    The grid runs once: later seeds replicate training at the chosen setting, not the choice.
    """
    header = train_teacher(
        cell, split_paths, size, train_config, checkpoint_path,
        selection_path=chosen_selection_path, log=log,
    )  # fmt: skip
    candidate = _selection_candidate(header, checkpoint_path)
    log.info("lr x%g, as chosen on seed %d", candidate["lr_factor"], chosen_on_seed)
    return _write_selection(selection_path, candidate, [candidate], chosen_on_seed=chosen_on_seed)


def chosen_lr_factor(lr_factor: float | None, chosen_selection_path: str | Path | None) -> float:
    """The learning-rate factor a run trains at: its own grid point, else the first seed's
    choice, else 1 (a method with nothing to tune)."""
    if lr_factor is not None:
        return float(lr_factor)
    if chosen_selection_path is not None:
        return float(json.loads(Path(chosen_selection_path).read_text())["lr_factor"])
    return 1.0


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


def budget_factor_of(settings: Mapping[str, Any], cell: NetworkCell) -> float:
    """The method's parameter budget as a factor of the student's count: its own factor, or
    the blockwise student's count over the student's (settings["budget_of"] == "blockwise")."""
    if settings.get("budget_of") != "blockwise":
        return float(settings["budget_factor"])
    replacement = replacement_size_of(settings["blockwise"], cell.arch)
    blockwise_cell = dataclasses.replace(cell, replacement_size=replacement)
    blockwise, _ = build_network("blockwise", blockwise_cell)
    return count_parameters(blockwise) / parameters_of(cell.arch, cell.sizes["student"])


def student_training_data(
    train_inputs: np.ndarray,
    train_labels: np.ndarray,
    settings: Mapping[str, Any],
    teacher_paths: Sequence[str | Path],
    clusters_path: str | Path | None,
    device_name: str,
    log: logging.Logger = LOG,
) -> tuple[tuple, KDSettings | None]:
    """(train data, KD settings) for train_phase: labels and None (BCE), or, with soft targets,
    each sample's routed teacher's logits and the method's KD settings."""
    if settings["soft_targets"] is None:
        return (train_inputs, train_labels), None
    teachers, _ = load_models(teacher_paths)
    routes = soft_target_routes(settings["soft_targets"], len(train_labels), clusters_path)
    missing = sorted(set(np.unique(routes).tolist()) - set(teachers))
    if missing:
        raise ValueError(
            f"{settings['method']}: samples routed to clusters without a teacher: {missing}"
        )
    log.info("computing soft targets of %d teacher(s) for %d samples", len(teachers), len(routes))
    soft_logits = teacher_soft_logits(
        teachers, train_inputs, routes, batch_size=1024, device=resolve_device(device_name)
    )
    return (train_inputs, train_labels, soft_logits), settings["kd"]


def train_student(
    cell: Cell,
    split_paths: Mapping[str, str | Path],
    sizes: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    train_config: Mapping[str, Any],
    checkpoint_path: str | Path,
    method: str,
    teacher_paths: Sequence[str | Path] = (),
    clusters_path: str | Path | None = None,
    lr_factor: float | None = None,
    chosen_selection_path: str | Path | None = None,
    selection_path: str | Path | None = None,
    chosen_on_seed: int | None = None,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Train the cell's model of a method (settings from packd.methods.method_settings): on labels
    only, or distilled from the teachers its soft targets come from, in its training phase
    (settings["phase"]), at lr_factor times the phase's rate (a grid point on the first seed)
    or at the factor chosen on the first seed (chosen_selection_path, recorded at
    selection_path with chosen_on_seed). Returns the checkpoint's header."""
    factor = chosen_lr_factor(lr_factor, chosen_selection_path)
    splits = load_splits(split_paths)
    train_inputs, train_labels = splits["train"]["inputs"], splits["train"]["labels"]
    train_data, kd = student_training_data(
        train_inputs,
        train_labels,
        settings,
        teacher_paths,
        clusters_path,
        train_config["device"],
        log,
    )
    seed_everything(cell.seed)
    network_cell = NetworkCell(arch=cell.arch, sizes=sizes, seed=cell.seed)
    network = network_named(settings["network"])
    model, network_fields = network.build(network_cell, budget_factor_of(settings, network_cell))
    phase_name = settings["phase"]
    phase = PhaseSettings.from_config(train_config, phase_name, cell.arch)
    phase = dataclasses.replace(phase, lr=phase.lr * factor)
    log.info(
        "%s cell, %s network %s (%s): %d parameters, %s phase at lr %g (x%g)",
        cell.arch,
        settings["network"],
        network_fields["size"],
        method,
        count_parameters(model),
        phase_name,
        phase.lr,
        factor,
    )
    if not network.trains:
        # Nothing to learn: the scores are the training frequencies (set as the output bias).
        phase = dataclasses.replace(phase, epochs=0, prior_bias=True)
    result = train_phase(model, train_data, splits, phase, kd=kd, seed=cell.seed, log=log.info)
    header = checkpoint_header(
        model,
        network_fields.pop("arch"),
        network_fields.pop("size"),
        "student",
        cell.app,
        **network_fields,
        cell_arch=cell.arch,
        method=method,
        settings=settings_record(settings),
        lr_factor=factor,
        train_samples=len(train_labels),
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)
    if selection_path is not None:
        candidate = _selection_candidate(header, checkpoint_path)
        fields = {} if chosen_on_seed is None else {"chosen_on_seed": int(chosen_on_seed)}
        _write_selection(selection_path, candidate, [candidate], **fields)
    return header
