"""Blockwise distillation stages: teacher activations once, one job per block, assembly.

Each stage is what one Snakemake job does (see workflow/rules/blockwise.smk): the teacher's
block-boundary activations are stored one file per boundary, so block job i reads only the two
files it needs and no block job waits for another.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from packd.cell import Cell
from packd.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from packd.dataset import load_split
from packd.methods import settings_record
from packd.models import count_parameters
from packd.networks import model_from_checkpoint
from packd.stages.training import load_splits, student_training_data
from packd.train import PhaseSettings, seed_everything, train_phase

LOG = logging.getLogger("packd")

BOUNDARY_FILE = "boundary{}.npz"  # boundary i: the input of block i, the output of block i - 1
BLOCK_SPLITS = ("train", "val")


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
    cell: Cell,
    layers_per_block: int,
    max_samples: Mapping[str, int | None],
    activations_dir: str | Path,
    device: str,
    log: logging.Logger = LOG,
) -> int:
    """Write the teacher's activations at every block boundary, one float16 .npz per boundary
    holding a subsample of the train and val splits drawn from the cell's seed; returns the number
    of blocks."""
    teacher, _ = model_from_checkpoint(teacher_path)
    split = teacher_blocks(teacher, cell.arch, layers_per_block)
    boundaries_by_split = {}
    for offset, split_name in enumerate(BLOCK_SPLITS):
        inputs = load_split(split_paths[split_name])["inputs"]
        rows = subsample_rows(len(inputs), max_samples[split_name], cell.seed + offset)
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
        arrays: dict[str, Any] = {
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
    cell: Cell,
    teacher_size: Mapping[str, Any],
    replacement_size: Mapping[str, Any],
    index: int,
    history: list[dict[str, float]],
    val_relative_mse: float,
) -> None:
    """Save one trained replacement block with its header (sizes, index, history, val MSE)."""
    size = {"teacher_size": dict(teacher_size), "replacement_size": dict(replacement_size)}
    header = checkpoint_header(
        replacement,
        cell.arch,
        size,
        "replacement_block",
        cell.app,
        block=index,
        history=history,
        val_relative_mse=val_relative_mse,
    )
    save_checkpoint(path, state, header)


def distill_block(
    activations_dir: str | Path,
    teacher_path: str | Path,
    cell: Cell,
    index: int,
    replacement_size: Mapping[str, Any],
    block_training: Mapping[str, Any],
    checkpoint_path: str | Path,
    device: str,
    log: logging.Logger = LOG,
) -> float:
    """Train replacement block index on the teacher's input and output of that block (MSE) and
    save it; returns its relative MSE on the val activations."""
    teacher, teacher_header = model_from_checkpoint(teacher_path)
    _, layers_per_block = replacement_settings(replacement_size)
    split = teacher_blocks(teacher, cell.arch, layers_per_block)
    replacement = replacement_blocks(split, cell.arch, replacement_size, cell.seed)[index]
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
        seed=cell.seed,
        log=log.info,
        device=device,
    )
    val_relative_mse = relative_mse(replacement, block_inputs["val"], block_targets["val"])
    log.info("block %d: val relative_mse %.5f", index, val_relative_mse)
    _save_block(
        checkpoint_path,
        state,
        replacement,
        cell,
        teacher_header["size"],
        replacement_size,
        index,
        history,
        val_relative_mse,
    )
    return val_relative_mse


def distill_blocks_sequentially(
    activations_dir: str | Path,
    teacher_path: str | Path,
    cell: Cell,
    replacement_size: Mapping[str, Any],
    block_training: Mapping[str, Any],
    checkpoint_dir: str | Path,
    device: str,
    log: logging.Logger = LOG,
) -> list[Path]:
    """The baseline: every block of distill_block trained one after another in one call (same
    results), saved as checkpoint_dir/block{i}.pt; returns the paths."""
    teacher, teacher_header = model_from_checkpoint(teacher_path)
    split = teacher_blocks(teacher, cell.arch, replacement_settings(replacement_size)[1])
    replacements = replacement_blocks(split, cell.arch, replacement_size, cell.seed)
    boundaries = [load_boundary(activations_dir, i) for i in range(len(replacements) + 1)]
    results = train_blocks_sequentially(
        replacements,
        [boundary["train"] for boundary in boundaries],
        epochs=block_training["epochs"],
        lr=block_training["lr"],
        batch_size=block_training["batch_size"],
        seed=cell.seed,
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
            cell,
            teacher_header["size"],
            replacement_size,
            index,
            history,
            val_relative_mse,
        )
    return paths


@dataclass(frozen=True, kw_only=True)
class AssemblySettings:
    """What assemble_blockwise trains besides its files: the method and its settings
    (packd.methods.method_settings), the replacement size, config["train"] and the fine-tuning
    epochs (None: the student phase's)."""

    method: str
    method_settings: Mapping[str, Any]
    replacement_size: Mapping[str, Any]
    train_config: Mapping[str, Any]
    fine_tune_epochs: int | None

    def phase(self, arch: str) -> PhaseSettings:
        """The student phase of train_config for arch, with fine_tune_epochs when set."""
        phase = PhaseSettings.from_config(self.train_config, "student", arch)
        if self.fine_tune_epochs is not None:
            phase = dataclasses.replace(phase, epochs=int(self.fine_tune_epochs))
        return phase


def assemble_blockwise(
    cell: Cell,
    settings: AssemblySettings,
    teacher_path: str | Path,
    block_paths: Sequence[str | Path],
    split_paths: Mapping[str, str | Path],
    checkpoint_path: str | Path,
    teacher_paths: Sequence[str | Path] = (),
    clusters_path: str | Path | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Swap the trained blocks into the teacher's pre and post, fine-tune the student end to end
    and save it with builder "blockwise"."""
    teacher, teacher_header = model_from_checkpoint(teacher_path)
    block_states = [load_checkpoint(path)[1] for path in block_paths]
    student = assemble_student(teacher, cell.arch, block_states, settings.replacement_size)
    splits = load_splits(split_paths)
    train_data, kd = student_training_data(
        splits["train"]["inputs"],
        splits["train"]["labels"],
        settings.method_settings,
        teacher_paths,
        clusters_path,
        settings.train_config["device"],
        log,
    )
    phase = settings.phase(cell.arch)
    log.info(
        "%s blockwise student (%s): %d parameters (teacher %d), %d blocks, fine-tuned %d epochs",
        cell.arch,
        settings.method,
        count_parameters(student),
        count_parameters(teacher),
        len(block_states),
        phase.epochs,
    )
    seed_everything(cell.seed)
    result = train_phase(student, train_data, splits, phase, kd=kd, seed=cell.seed, log=log.info)
    header = blockwise_header(
        student,
        cell.arch,
        teacher_header["size"],
        settings.replacement_size,
        cell.app,
        role="student",
        builder="blockwise",
        method=settings.method,
        settings=settings_record(settings.method_settings),
        train_samples=len(splits["train"]["labels"]),
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)
