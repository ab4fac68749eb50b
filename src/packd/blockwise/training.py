"""Training the replacement blocks: the teacher's activations at the block boundaries, then each
replacement with Adam and MSE on its block's input and output (or all in one call, the baseline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from packd.blockwise.cut import BlockwiseModel
from packd.models import channels_last
from packd.optim import make_adam
from packd.train import resolve_device

# Teacher activations at the block boundaries (packd.stages.blockwise stores them, one file each).


@torch.inference_mode()
def block_activations(
    split: BlockwiseModel,
    inputs: np.ndarray | torch.Tensor,
    batch_size: int = 1024,
    device: str = "cpu",
) -> list[np.ndarray]:
    """The teacher's activations at each block boundary, float32 (split is put in eval mode).

    Element i is the input of block i; element i + 1 its output (len(blocks) + 1 arrays).
    """
    torch_device = resolve_device(device)
    split = split.to(torch_device).eval()
    inputs = torch.as_tensor(inputs, dtype=torch.float32)
    batches: list[list[torch.Tensor]] = [[] for _ in range(len(split.blocks) + 1)]
    for start in range(0, inputs.shape[0], batch_size):
        features = split.pre(inputs[start : start + batch_size].to(torch_device))
        batches[0].append(features.float().cpu())
        for index, block in enumerate(split.blocks, start=1):
            features = block(features)
            batches[index].append(features.float().cpu())
    return [torch.cat(boundary).numpy() for boundary in batches]


# Local training.


def train_block(
    replacement: nn.Module,
    block_inputs: np.ndarray | torch.Tensor,
    block_targets: np.ndarray | torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Train replacement (in place) with Adam and MSE to map the teacher's block inputs to outputs.

    Returns (final state on the CPU, one record per epoch). relative_mse is the MSE over the
    targets' variance: the fraction of the teacher block's output the replacement misses.
    """
    log = log or (lambda line: None)
    torch_device = resolve_device(device)
    block_inputs, block_targets = torch.as_tensor(block_inputs), torch.as_tensor(block_targets)
    if block_inputs.shape[0] != block_targets.shape[0]:
        raise ValueError(
            f"{block_inputs.shape[0]} block inputs but {block_targets.shape[0]} targets"
        )
    target_variance = float(block_targets.float().var(dim=0, correction=0).mean())
    replacement = replacement.to(torch_device).train()
    optimizer = make_adam(replacement.parameters(), lr, torch_device)
    order_generator = torch.Generator().manual_seed(seed)
    n_samples = block_inputs.shape[0]
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        order = torch.randperm(n_samples, generator=order_generator)
        loss_sum = torch.zeros((), device=torch_device)
        for start in range(0, n_samples, batch_size):
            rows = order[start : start + batch_size]
            batch_inputs = channels_last(block_inputs[rows].to(torch_device, torch.float32))
            batch_targets = block_targets[rows].to(torch_device, torch.float32)
            batch_loss = nn.functional.mse_loss(replacement(batch_inputs), batch_targets)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            loss_sum += batch_loss.detach() * rows.numel()
        seconds = time.perf_counter() - epoch_start
        mse = float(loss_sum) / max(n_samples, 1)
        record = {
            "epoch": epoch,
            "mse": mse,
            "relative_mse": mse / max(target_variance, 1e-12),
            "seconds": seconds,
            "samples_per_s": n_samples / max(seconds, 1e-9),
        }
        history.append(record)
        log(
            f"epoch {epoch} mse {mse:.6f} relative_mse {record['relative_mse']:.5f} "
            f"{record['samples_per_s']:.0f} samples/s"
        )
    state = {
        name: tensor.detach().cpu().clone() for name, tensor in replacement.state_dict().items()
    }
    return state, history


@torch.inference_mode()
def _run_block(block: nn.Module, block_inputs: np.ndarray, batch_size: int) -> np.ndarray:
    block = block.cpu().eval()
    inputs = torch.as_tensor(block_inputs, dtype=torch.float32)
    starts = range(0, inputs.shape[0], batch_size)
    batches = [block(channels_last(inputs[start : start + batch_size])) for start in starts]
    return torch.cat(batches).numpy()


def train_blocks_sequentially(
    replacements: Sequence[nn.Module],
    boundaries: Sequence[np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    upstream: str = "teacher",
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> list[tuple[dict[str, torch.Tensor], list[dict[str, float]]]]:
    """The baseline: train every replacement one after another in one call, each with seed.

    upstream "teacher" does the same work as the independent block jobs (same results, one worker);
    "student" feeds block i the trained student blocks' output instead (progressive blockwise
    distillation), the dependency that forces the blocks to be trained in order.
    """
    if upstream not in ("teacher", "student"):
        raise ValueError(f"upstream must be 'teacher' or 'student', got {upstream!r}")
    if len(boundaries) != len(replacements) + 1:
        raise ValueError(f"{len(replacements)} blocks need {len(replacements) + 1} boundaries")
    log = log or (lambda line: None)
    results = []
    block_inputs = boundaries[0]
    for index, replacement in enumerate(replacements):
        log(f"block {index}")
        results.append(
            train_block(
                replacement,
                block_inputs,
                boundaries[index + 1],
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                seed=seed,
                log=log,
                device=device,
            )
        )
        if upstream == "student":
            block_inputs = _run_block(replacement, block_inputs, batch_size)
        else:
            block_inputs = boundaries[index + 1]
    return results
