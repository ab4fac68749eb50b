"""A toy compression method from outside the package, registered as a plugin
(`PACKD_PLUGINS=tests.toy_method`): a low-rank linear model of the flattened input at the student's
parameter count, trained on labels. No other file names it; tests/e2e/test_toy_method.py trains,
evaluates and tabulates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from packd.methods import Method, register_method
from packd.networks import Built, Network, NetworkCell, parameters_of, register_network
from packd.shapes import CHUNKS, HISTORY, OUTPUTS

TOY = "toy"


class LowRankLinear(nn.Module):
    """The flattened 10x10 input projected to `rank` features, then the head."""

    def __init__(self, rank: int):
        super().__init__()
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(HISTORY * CHUNKS, rank, bias=False))
        self.head = nn.Linear(rank, OUTPUTS)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.project(inputs))


def build_low_rank(cell: NetworkCell, budget_factor: float) -> Built:
    """The largest rank within budget_factor times the cell's student's parameter count."""
    budget = round(budget_factor * parameters_of(cell.arch, cell.sizes["student"]))
    rank = max(1, (budget - OUTPUTS) // (HISTORY * CHUNKS + OUTPUTS))
    size = {"rank": rank}
    return LowRankLinear(**size), {"arch": cell.arch, "size": size, "builder": TOY}


def rebuild_low_rank(header: Mapping[str, Any]) -> nn.Module:
    return LowRankLinear(**header["size"])


register_network(Network(name=TOY, build=build_low_rank, rebuild=rebuild_low_rank, builder=TOY))
register_method(
    Method(
        name=TOY,
        label="toy low-rank",
        color="#000080",
        role="student",
        network=TOY,
        differs_from_packd="a low-rank linear model of the student's size, trained on labels",
    )
)
