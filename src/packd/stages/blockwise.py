"""Blockwise distillation stages: teacher activations once, one job per block, assembly.

Each stage is what one Snakemake job does (see workflow/rules/blockwise.smk): the teacher's
block-boundary activations are stored one file per boundary, so block job i reads only the two
files it needs and no block job waits for another.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from packd.atomic import atomic_path
from packd.blockwise import (
    assemble_student,
    block_activations,
    blockwise_header,
    replacement_blocks,
    replacement_settings,
    teacher_blocks,
    train_block,
    train_blocks_sequentially,
)
from packd.checkpoint import (
    checkpoint_header,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from packd.dataset import load_split
from packd.models import CHUNKS, HISTORY, RESNET_BLOCKS, count_parameters
from packd.stages.training import load_splits, student_training_data
from packd.train import PhaseSettings, seed_everything, train_phase

LOG = logging.getLogger("packd")

# config["blockwise"] as the rules read it; a key left out takes its value here.
BLOCKWISE_DEFAULTS: dict[str, Any] = {
    "width": 0.25,
    "layers_per_block": {"lstm": 1, "mixer": 3, "resnet": 1},
    # Block training reads a seeded subsample: the activations of every boundary are on disk
    # (ResNet's were 622 MB for 40,000 training samples at float16).
    "max_samples": {"train": 20000, "val": 5000},
    "block": {"epochs": 5, "lr": 0.005, "batch_size": 256},
    "fine_tune": {"epochs": None},  # None: the student phase's epochs
}
BOUNDARY_FILE = "boundary{}.npz"  # boundary i: the input of block i, the output of block i - 1
BLOCK_SPLITS = ("train", "val")


def blockwise_settings(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """config["blockwise"] (may be None or partial) filled in from BLOCKWISE_DEFAULTS."""
    section = dict(section or {})
    unknown = set(section) - set(BLOCKWISE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown blockwise keys {sorted(unknown)}; valid: {BLOCKWISE_DEFAULTS}")
    settings = {}
    for key, default in BLOCKWISE_DEFAULTS.items():
        value = section.get(key, default)
        settings[key] = {**default, **value} if isinstance(default, dict) else value
    return settings


def replacement_size_of(settings: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """The replacement_size (width, layers_per_block) of one arch under blockwise settings."""
    return {"width": settings["width"], "layers_per_block": settings["layers_per_block"][arch]}


def block_count(arch: str, teacher_size: Mapping[str, Any], layers_per_block: int) -> int:
    """How many blocks teacher_blocks cuts a teacher of this size into (no model is built).

    The rules call it to expand the block files, so it must stay cheap; a test checks it against
    len(teacher_blocks(...).blocks).
    """
    if layers_per_block < 1:
        raise ValueError(f"layers_per_block must be >= 1, got {layers_per_block}")
    if arch == "lstm":
        return math.ceil(int(teacher_size["layers"]) / layers_per_block)
    if arch == "mixer":
        return math.ceil(int(teacher_size["depth"]) / layers_per_block)
    if arch == "resnet":
        if layers_per_block != 1:
            raise ValueError("ResNet blocks are its stages; layers_per_block does not apply")
        return sum(1 for blocks in teacher_size["layers"] if blocks > 0)
    raise ValueError(f"unknown arch '{arch}'; valid: lstm, mixer, resnet")


def block_output_sizes(
    arch: str, teacher_size: Mapping[str, Any], layers_per_block: int
) -> list[int]:
    """Elements per sample of each teacher block's output (no model is built): what a block's
    training time grows with on CPU, so the costliest block jobs can be started first.

    A test checks it against the cut teacher's activations.
    """
    count = block_count(arch, teacher_size, layers_per_block)
    if arch == "lstm":
        return [HISTORY * int(teacher_size["hidden"])] * count
    if arch == "mixer":
        patch = int(teacher_size.get("patch", HISTORY))
        tokens = (HISTORY // patch) * (CHUNKS // patch)
        return [tokens * int(teacher_size["dim"])] * count
    expansion = RESNET_BLOCKS[teacher_size["block"]].expansion
    sizes, side = [], HISTORY
    for stage, blocks in enumerate(teacher_size["layers"]):
        if blocks > 0:
            side = math.ceil(side / 2) if stage > 0 else side  # its first block has stride 2
            sizes.append(int(teacher_size["width"]) * 2**stage * expansion * side * side)
    return sizes


def block_priorities(
    arch: str, teacher_size: Mapping[str, Any], layers_per_block: int
) -> list[int]:
    """Snakemake priority of each block job: the rank of its output size (largest: highest).

    Started longest first, the ResNet's 4 unequal stages split evenly over 2 cores whatever order
    Snakemake would pick among equals.
    """
    sizes = block_output_sizes(arch, teacher_size, layers_per_block)
    distinct = sorted(set(sizes))
    return [distinct.index(size) for size in sizes]


def subsample_rows(n_rows: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted row indices: all rows, or max_rows of them drawn without replacement from seed."""
    if max_rows is None or n_rows <= max_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


def boundary_path(activations_dir: str | Path, index: int) -> Path:
    """The file of boundary index (its arrays: one per split in BLOCK_SPLITS)."""
    return Path(activations_dir) / BOUNDARY_FILE.format(index)


def load_boundary(activations_dir: str | Path, index: int) -> dict[str, np.ndarray]:
    """The teacher's activations at one boundary, by split, as stored (float16)."""
    with np.load(boundary_path(activations_dir, index), allow_pickle=False) as stored:
        return {split: stored[split] for split in stored.files}


def save_teacher_block_activations(
    teacher_path: str | Path,
    split_paths: Mapping[str, str | Path],
    arch: str,
    layers_per_block: int,
    max_samples: Mapping[str, int | None],
    seed: int,
    activations_dir: str | Path,
    device: str = "auto",
    log: logging.Logger = LOG,
) -> int:
    """Write the teacher's activations at every block boundary, one float16 .npz per boundary
    holding a seeded subsample of the train and val splits; returns the number of blocks."""
    teacher, _ = model_from_checkpoint(teacher_path)
    split = teacher_blocks(teacher, arch, layers_per_block)
    boundaries_by_split = {}
    for offset, split_name in enumerate(BLOCK_SPLITS):
        inputs = load_split(split_paths[split_name])["inputs"]
        rows = subsample_rows(len(inputs), max_samples.get(split_name), seed + offset)
        started = time.perf_counter()
        boundaries_by_split[split_name] = block_activations(split, inputs[rows], device=device)
        log.info(
            "%s: %d of %d samples through %d blocks in %.1f s",
            split_name,
            len(rows),
            len(inputs),
            len(split.blocks),
            time.perf_counter() - started,
        )
    Path(activations_dir).mkdir(parents=True, exist_ok=True)
    for index in range(len(split.blocks) + 1):
        arrays = {
            split_name: boundaries[index].astype(np.float16)
            for split_name, boundaries in boundaries_by_split.items()
        }
        with atomic_path(boundary_path(activations_dir, index), suffix=".npz") as temporary:
            np.savez(temporary, **arrays)
    return len(split.blocks)


def relative_mse(block: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray) -> float:
    """MSE of block on (inputs, targets) over the targets' variance (0: the teacher's output)."""
    with torch.inference_mode():
        block = block.cpu().eval()
        predictions = torch.cat(
            [
                block(torch.as_tensor(inputs[start : start + 1024], dtype=torch.float32))
                for start in range(0, len(inputs), 1024)
            ]
        )
        targets_tensor = torch.as_tensor(targets, dtype=torch.float32)
        mse = float(torch.nn.functional.mse_loss(predictions, targets_tensor))
        variance = float(targets_tensor.var(dim=0, correction=0).mean())
    return mse / max(variance, 1e-12)


def _save_block(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    replacement: torch.nn.Module,
    arch: str,
    teacher_size: Mapping[str, Any],
    replacement_size: Mapping[str, Any],
    app: str,
    index: int,
    history: list[dict[str, float]],
    val_relative_mse: float,
) -> None:
    """Save one trained replacement block with its header (sizes, index, history, val MSE)."""
    size = {"teacher_size": dict(teacher_size), "replacement_size": dict(replacement_size)}
    header = checkpoint_header(
        replacement,
        arch,
        size,
        "replacement_block",
        app,
        block=index,
        history=history,
        val_relative_mse=val_relative_mse,
    )
    save_checkpoint(path, state, header)


def distill_block(
    activations_dir: str | Path,
    teacher_path: str | Path,
    arch: str,
    index: int,
    replacement_size: Mapping[str, Any],
    block_training: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    device: str = "auto",
    log: logging.Logger = LOG,
) -> float:
    """Train replacement block index on the teacher's input and output of that block (MSE) and
    save it; returns its relative MSE on the val activations."""
    teacher, teacher_header = model_from_checkpoint(teacher_path)
    _, layers_per_block = replacement_settings(replacement_size)
    split = teacher_blocks(teacher, arch, layers_per_block)
    replacement = replacement_blocks(split, arch, replacement_size, seed)[index]
    block_inputs, block_targets = (
        load_boundary(activations_dir, index),
        load_boundary(activations_dir, index + 1),
    )
    log.info(
        "block %d of %d: teacher %d -> replacement %d parameters, %d training samples",
        index,
        len(split.blocks),
        count_parameters(split.blocks[index]),
        count_parameters(replacement),
        len(block_inputs["train"]),
    )
    state, history = train_block(
        replacement,
        block_inputs["train"],
        block_targets["train"],
        epochs=block_training["epochs"],
        lr=block_training["lr"],
        batch_size=block_training["batch_size"],
        seed=seed,
        log=log.info,
        device=device,
    )
    val_relative_mse = relative_mse(replacement, block_inputs["val"], block_targets["val"])
    log.info("block %d: val relative_mse %.5f", index, val_relative_mse)
    _save_block(
        checkpoint_path,
        state,
        replacement,
        arch,
        teacher_header["size"],
        replacement_size,
        app,
        index,
        history,
        val_relative_mse,
    )
    return val_relative_mse


def distill_blocks_sequentially(
    activations_dir: str | Path,
    teacher_path: str | Path,
    arch: str,
    replacement_size: Mapping[str, Any],
    block_training: Mapping[str, Any],
    seed: int,
    checkpoint_dir: str | Path,
    app: str,
    device: str = "auto",
    log: logging.Logger = LOG,
) -> list[Path]:
    """The baseline: every block of distill_block trained one after another in one call (same
    results), saved as checkpoint_dir/block{i}.pt; returns the paths."""
    teacher, teacher_header = model_from_checkpoint(teacher_path)
    split = teacher_blocks(teacher, arch, replacement_settings(replacement_size)[1])
    replacements = replacement_blocks(split, arch, replacement_size, seed)
    boundaries = [load_boundary(activations_dir, i) for i in range(len(replacements) + 1)]
    results = train_blocks_sequentially(
        replacements,
        [boundary["train"] for boundary in boundaries],
        epochs=block_training["epochs"],
        lr=block_training["lr"],
        batch_size=block_training["batch_size"],
        seed=seed,
        upstream="teacher",
        log=log.info,
        device=device,
    )
    paths = []
    for index, (replacement, (state, history)) in enumerate(
        zip(replacements, results, strict=True)
    ):
        val_relative_mse = relative_mse(
            replacement, boundaries[index]["val"], boundaries[index + 1]["val"]
        )
        paths.append(Path(checkpoint_dir) / f"block{index}.pt")
        _save_block(
            paths[-1],
            state,
            replacement,
            arch,
            teacher_header["size"],
            replacement_size,
            app,
            index,
            history,
            val_relative_mse,
        )
    return paths


def assemble_blockwise(
    teacher_path: str | Path,
    block_paths: Sequence[str | Path],
    split_paths: Mapping[str, str | Path],
    arch: str,
    replacement_size: Mapping[str, Any],
    settings: Mapping[str, Any],
    train_config: Mapping[str, Any],
    fine_tune_epochs: int | None,
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    method: str,
    teacher_paths: Sequence[str | Path] = (),
    clusters_path: str | Path | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Swap the trained blocks into the teacher's pre and post, fine-tune the student end to end
    (settings from packd.methods.method_settings) and save it with builder "blockwise"."""
    teacher, teacher_header = model_from_checkpoint(teacher_path)
    block_states = [load_checkpoint(path)[1] for path in block_paths]
    student = assemble_student(teacher, arch, block_states, replacement_size)
    splits = load_splits(split_paths)
    train_data, loss = student_training_data(
        splits["train"]["inputs"],
        splits["train"]["labels"],
        settings,
        teacher_paths,
        clusters_path,
        train_config.get("device", "auto"),
        log,
    )
    phase = PhaseSettings.from_config(train_config, "student", arch)
    if fine_tune_epochs is not None:
        phase = dataclasses.replace(phase, epochs=int(fine_tune_epochs))
    log.info(
        "%s blockwise student (%s): %d parameters (teacher %d), %d blocks, fine-tuned %d epochs",
        arch,
        method,
        count_parameters(student),
        count_parameters(teacher),
        len(block_states),
        phase.epochs,
    )
    seed_everything(seed)
    result = train_phase(student, train_data, splits, phase, loss=loss, seed=seed, log=log.info)
    header = blockwise_header(
        student,
        arch,
        teacher_header["size"],
        replacement_size,
        app,
        role="student",
        builder="blockwise",
        method=method,
        settings=dict(settings),
        train_samples=len(splits["train"]["labels"]),
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)
