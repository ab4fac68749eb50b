"""HashedNet (Chen et al., 2015), ROAST's baseline: each layer owns its own array and every
weight is hashed on its own, with a random sign.

packd.hashing.compress_model builds a HashedNet model, splitting the budget over its layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from packd.hashed_layers import HASH_PRIME, odd_hash_coefficients


class HashedNetWeight(nn.Module):
    """A (rows x cols) virtual weight matrix: each entry a sign times a hashed slot of its array."""

    hash_coefficients: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, rows: int, cols: int, size: int, scale: float, seed: int):
        super().__init__()
        self.rows, self.cols = rows, cols
        generator = torch.Generator().manual_seed(seed)
        # No scale factor in HashedNet: the array itself holds the dense init's distribution
        uniform = torch.rand(size, generator=generator) * 2 - 1
        self.weight = nn.Parameter(uniform * scale * math.sqrt(3.0))
        # slot = ((a*k + b) mod P) mod size, sign = 1 - 2 * (((e*k + f) mod P) mod 2), k flat index
        self.register_buffer("hash_coefficients", odd_hash_coefficients(4, generator))

    def slots_and_signs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot (int64) and sign (+-1.0) of every virtual weight, row-major, hashed afresh."""
        a, b, e, f = self.hash_coefficients
        flat = torch.arange(self.rows * self.cols, device=self.weight.device)
        slots = (flat * a + b) % HASH_PRIME % self.weight.numel()
        signs = 1.0 - 2.0 * ((flat * e + f) % HASH_PRIME % 2).to(self.weight.dtype)
        return slots, signs

    def forward(self) -> torch.Tensor:
        """The virtual weight matrix, gathered element by element (HashedNet keeps no index)."""
        slots, signs = self.slots_and_signs()
        return (self.weight[slots] * signs).view(self.rows, self.cols)


def split_budget(total: int, virtual_sizes: list[int]) -> list[int]:
    """`total` slots split in proportion to `virtual_sizes` (largest remainder), each at least 1."""
    if total < len(virtual_sizes):
        raise ValueError(f"{total} slots cannot give each of {len(virtual_sizes)} arrays one")
    whole = sum(virtual_sizes)
    shares = [total * size // whole for size in virtual_sizes]
    by_remainder = sorted(
        range(len(virtual_sizes)),
        key=lambda index: (-(total * virtual_sizes[index] % whole), index),
    )
    for index in by_remainder[: total - sum(shares)]:
        shares[index] += 1
    for index, share in enumerate(shares):
        if share == 0:
            shares[max(range(len(shares)), key=shares.__getitem__)] -= 1
            shares[index] = 1
    return shares
