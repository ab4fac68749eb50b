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
from packd.checkpoint import checkpoint_header, load_checkpoint, load_models, save_checkpoint
from packd.clustering import cluster_splits, load_cluster_ids
from packd.dataset import SPLIT_NAMES, load_split
from packd.distill import teacher_soft_logits
from packd.hashing import compress_model, hashing_header, smallest_budget
from packd.models import build_model, count_parameters, mlp_hidden_for, size_for_budget
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
    init = cluster_config.get("init", "warm_start")
    if init not in CLUSTER_TEACHER_INITS:
        raise ValueError(f"unknown cluster-teacher init {init!r}; valid: {CLUSTER_TEACHER_INITS}")
    if init == "warm_start":
        fine_tune = dataclasses.replace(
            settings,
            epochs=int(cluster_config.get("epochs", 4)),
            lr=settings.lr * float(cluster_config.get("lr_factor", 0.5)),
            min_epochs=1,
        )
        return fine_tune, True
    epochs = math.ceil(settings.epochs * n_app / max(n_cluster, 1))
    return dataclasses.replace(settings, epochs=epochs), False


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
    lr_factor: float | None = None,
    selection_path: str | Path | None = None,
    whole_app_teacher_path: str | Path | None = None,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Train one teacher on one cluster's samples (or the whole app), save its checkpoint and
    return the checkpoint's header.

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
        return header
    seed_everything(seed)
    model = build_model(arch, size)
    settings = PhaseSettings.from_config(train_config, "teacher", arch)
    settings = dataclasses.replace(settings, lr=settings.lr * lr_factor)
    warm_start = False
    if clusters_path is not None:
        settings, warm_start = cluster_teacher_phase(
            settings, train_config.get("cluster_teachers", {}), n_train, n_app
        )
        fields["init"] = "warm_start" if warm_start else "scratch"
        if warm_start:
            if whole_app_teacher_path is None:
                raise ValueError("a warm-started cluster teacher needs the whole-app teacher")
            _, state = load_checkpoint(Path(whole_app_teacher_path))
            model.load_state_dict(state)
    log.info(
        "%s teacher %s: %d parameters, %d training samples, %s, %d epochs at lr %g",
        arch,
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
        loss="bce",
        seed=seed,
        log=log.info,
        initial_candidate=warm_start,
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
    return header


def _selection_candidate(header: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """A training run as the selection records it: its factor and best validation F1."""
    best = max((record["val_f1"] for record in header["history"]), default=0.0)
    return {"lr_factor": float(header["lr_factor"]), "val_f1": best, "path": str(path)}


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
        log.info("candidate lr x%g: best validation F1 %.4f", factor, candidate["val_f1"])
    chosen = max(candidates, key=lambda candidate: candidate["val_f1"])
    header, state = load_checkpoint(Path(chosen["path"]))
    save_checkpoint(Path(checkpoint_path), state, header)
    log.info("chose lr x%g", chosen["lr_factor"])
    return _write_selection(selection_path, chosen, candidates)


def replicate_teacher(
    split_paths: Mapping[str, str | Path],
    arch: str,
    size: Mapping[str, Any],
    train_config: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    selection_path: str | Path,
    chosen_selection_path: str | Path,
    chosen_on_seed: int,
    app: str,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """The whole-app teacher of a later seed: trained at the learning-rate factor chosen on the
    first seed's validation (chosen_selection_path), recorded as this seed's selection.

    The grid runs once: later seeds replicate training at the chosen setting, not the choice.
    """
    header = train_teacher(
        split_paths, arch, size, train_config, seed, checkpoint_path, app,
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


def budget_factor_of(
    settings: Mapping[str, Any], arch: str, sizes: Mapping[str, Mapping[str, Any]]
) -> float:
    """The method's parameter budget as a factor of the student's count: its own factor, or
    the blockwise student's count over the student's (settings["budget_of"] == "blockwise")."""
    if settings.get("budget_of") != "blockwise":
        return float(settings.get("budget_factor", 1.0))
    from packd.blockwise import blockwise_parameter_counts
    from packd.stages.blockwise import blockwise_settings, replacement_size_of

    replacement = replacement_size_of(blockwise_settings(settings.get("blockwise")), arch)
    counts = blockwise_parameter_counts(arch, sizes["teacher"], replacement)
    return counts["student"] / count_parameters(build_model(arch, sizes["student"]))


def build_network(
    network: str,
    arch: str,
    sizes: Mapping[str, Mapping[str, Any]],
    seed: int,
    budget_factor: float = 1.0,
) -> tuple[Any, dict[str, Any]]:
    """The untrained network a method trains, and the header fields that rebuild it.

    student: the arch's student size (its width scaled to budget_factor times the student's
    parameters); mlp: a plain MLP of the teacher's parameter count; frequency: per-bit
    frequencies only; roast / hashednet: the teacher's architecture compressed to budget_factor
    times the student's parameter count.
    """
    student_params = count_parameters(build_model(arch, sizes["student"]))
    budget = round(budget_factor * student_params)
    if network == "student":
        size = dict(sizes["student"])
        if budget_factor != 1.0:
            size = size_for_budget(arch, size, budget)
        return build_model(arch, size), {"arch": arch, "size": size}
    if network == "frequency":
        return build_model("frequency", {}), {"arch": "frequency", "size": {}}
    teacher_params = count_parameters(build_model(arch, sizes["teacher"]))
    if network == "mlp":
        size = {"hidden": mlp_hidden_for(teacher_params)}
        return build_model("mlp", size), {"arch": "mlp", "size": size}
    if network in ("roast", "hashednet"):
        teacher = build_model(arch, sizes["teacher"])
        # A teacher's dense parts (biases, norms) can outnumber a tiny student's parameters:
        # then the budget is the smallest that leaves a hashed array (the table shows params).
        model = compress_model(teacher, network, smallest_budget(teacher, budget), seed)
        fields = {"arch": arch, "size": dict(sizes["teacher"]), "builder": "hashed"}
        return model, {**fields, "hashing": hashing_header(model)}
    raise ValueError(f"unknown network {network!r}")


def student_training_data(
    train_inputs: np.ndarray,
    train_labels: np.ndarray,
    settings: Mapping[str, Any],
    teacher_paths: Sequence[str | Path],
    clusters_path: str | Path | None,
    device_name: str,
    log: logging.Logger = LOG,
) -> tuple[tuple, Any]:
    """(train data, loss) for train_phase: labels and BCE, or, with soft targets, each sample's
    routed teacher's logits and the method's KD loss."""
    if settings["soft_targets"] is None:
        return (train_inputs, train_labels), "bce"
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
    loss = (
        "kd",
        settings["alpha"],
        settings["temperature"],
        settings.get("scale_soft_by_t2", True),
    )
    return (train_inputs, train_labels, soft_logits), loss


def train_student(
    split_paths: Mapping[str, str | Path],
    arch: str,
    sizes: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    train_config: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    method: str,
    teacher_paths: Sequence[str | Path] = (),
    clusters_path: str | Path | None = None,
    lr_factor: float | None = None,
    chosen_selection_path: str | Path | None = None,
    selection_path: str | Path | None = None,
    chosen_on_seed: int | None = None,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Train one model of a method (settings from packd.methods.method_settings): on labels
    only, or distilled from the teachers its soft targets come from, in its training phase
    (settings["phase"]), at lr_factor times the phase's rate (a grid point on the first seed)
    or at the factor chosen on the first seed (chosen_selection_path, recorded at
    selection_path with chosen_on_seed). Returns the checkpoint's header."""
    factor = chosen_lr_factor(lr_factor, chosen_selection_path)
    splits = load_splits(split_paths)
    train_inputs, train_labels = splits["train"]["inputs"], splits["train"]["labels"]
    train_data, loss = student_training_data(
        train_inputs,
        train_labels,
        settings,
        teacher_paths,
        clusters_path,
        train_config.get("device", "auto"),
        log,
    )
    seed_everything(seed)
    model, network_fields = build_network(
        settings["network"], arch, sizes, seed, budget_factor_of(settings, arch, sizes)
    )
    phase_name = settings.get("phase", "student")
    phase = PhaseSettings.from_config(train_config, phase_name, arch)
    phase = dataclasses.replace(phase, lr=phase.lr * factor)
    log.info(
        "%s cell, %s network %s (%s): %d parameters, %s phase at lr %g (x%g)",
        arch,
        settings["network"],
        network_fields["size"],
        method,
        count_parameters(model),
        phase_name,
        phase.lr,
        factor,
    )
    if settings["network"] == "frequency":
        # Nothing to learn: the scores are the training frequencies (set as the output bias).
        phase = dataclasses.replace(phase, epochs=0, prior_bias=True)
    result = train_phase(model, train_data, splits, phase, loss=loss, seed=seed, log=log.info)
    header = checkpoint_header(
        model,
        network_fields.pop("arch"),
        network_fields.pop("size"),
        "student",
        app,
        **network_fields,
        cell_arch=arch,
        method=method,
        settings=dict(settings),
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
