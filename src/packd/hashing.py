"""ROAST and HashedNet: weight matrices read from small hashed arrays instead of stored densely.

ROAST (Desai et al., ICML 2023): every hashed layer of a model reads its weight matrix, tile by
tile, from contiguous slices of ONE shared parameter array (`RoastArray`). HashedNet (Chen et
al., 2015), the baseline: each layer owns its own array and every weight is hashed on its own,
with a random sign. `compress_model` turns any model of the project into either at a memory budget;
`hashing_header` and `compress_from_header` rebuild it for a checkpoint's state dict.

The two schemes live in packd.roast and packd.hashednet, the layers they share in
packd.hashed_layers; this module picks the layers to hash and builds either model.

Virtual weight matrices use PyTorch's (out, in) layout; a Conv2d weight is (out, in * kh * kw).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import nn

from packd.hashed_layers import VirtualConv2d, VirtualLinear, VirtualLSTM
from packd.hashednet import HashedNetWeight, split_budget
from packd.roast import (
    DEFAULT_TILE,
    RoastArray,
    RoastWeight,
    _in_one_pass,
    fitting_tile,
    roast_scale_unit,
)

KINDS = ("roast", "hashednet")
# Containers iterate over their children in forward, so an extra `roast_array` child would run
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def dense_init_std(fan_in: int) -> float:
    """Std of PyTorch's default Linear/Conv2d/LSTM init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return 1.0 / math.sqrt(3.0 * fan_in)


@dataclass(frozen=True)
class HashingSpec:
    """What rebuilds a compressed model from its dense architecture: kind, budget, seed, tile,
    and ROAST's scale unit (its array's init std; None for HashedNet)."""

    kind: Literal["roast", "hashednet"]
    budget: int
    seed: int
    tile: tuple[int, int] = DEFAULT_TILE
    scale_unit: float | None = None

    def header(self) -> dict:
        """JSON-able form (the tile as a list; scale_unit only for ROAST)."""
        header: dict[str, object] = {
            "kind": self.kind,
            "budget": self.budget,
            "seed": self.seed,
            "tile": list(self.tile),
        }
        if self.scale_unit is not None:
            header["scale_unit"] = self.scale_unit
        return header


def hashed_matrices(module: nn.Module) -> list[tuple[int, int, float]]:
    """(rows, cols, dense init std) of each weight matrix of `module` that gets hashed, in order."""
    if isinstance(module, nn.Linear):
        return [(module.out_features, module.in_features, dense_init_std(module.in_features))]
    if isinstance(module, nn.Conv2d):
        out_channels, fan_in = module.weight.shape[0], module.weight[0].numel()
        return [(out_channels, fan_in, dense_init_std(fan_in))]
    if isinstance(module, nn.LSTM):
        if module.bidirectional or module.proj_size:
            raise ValueError("only unidirectional LSTMs without projection are hashed")
        hidden, std = module.hidden_size, dense_init_std(module.hidden_size)
        matrices = []
        for layer in range(module.num_layers):
            layer_input = module.input_size if layer == 0 else hidden
            matrices += [(4 * hidden, layer_input, std), (4 * hidden, hidden, std)]
        return matrices
    return []


def _virtual_layer(module: nn.Module, virtual_weights: list[nn.Module]) -> nn.Module:
    """The Virtual* replacement of a dense layer, reading its weights from `virtual_weights`."""
    if isinstance(module, nn.Linear):
        return VirtualLinear(virtual_weights[0], module.bias)
    if isinstance(module, nn.Conv2d):
        return VirtualConv2d(virtual_weights[0], module)
    # hashed_matrices hashes only Linear, Conv2d and LSTM: what is left is an LSTM
    lstm = cast(nn.LSTM, module)
    return VirtualLSTM(lstm, virtual_weights[0::2], virtual_weights[1::2])


# The smallest hashed array compress_model is asked for: below it a budget is raised (see
# smallest_budget), since the dense parts (biases, norms) alone can exceed a tiny student's count.
MIN_ARRAY_SLOTS = 1024


def dense_parameter_count(model: nn.Module) -> int:
    """Parameters compress_model leaves dense: biases, norms and any layer it does not hash."""
    hashed = sum(
        rows * cols for module in model.modules() for rows, cols, _ in hashed_matrices(module)
    )
    return sum(parameter.numel() for parameter in model.parameters()) - hashed


def smallest_budget(model: nn.Module, budget: int) -> int:
    """budget, or the dense parameters plus MIN_ARRAY_SLOTS when that is more."""
    return max(budget, dense_parameter_count(model) + MIN_ARRAY_SLOTS)


def compress_model(
    model: nn.Module,
    kind: Literal["roast", "hashednet"],
    budget: int,
    seed: int,
    tile: tuple[int, int] = DEFAULT_TILE,
    *,
    scale_unit: float | None = None,
) -> nn.Module:
    """A copy of `model` whose Linear, Conv2d and LSTM weights are hashed into `budget` parameters.

    `budget` counts every real parameter: the hashed array(s) get what the dense ones (biases,
    norms, any other layer) leave. The hashed part depends only on (architecture, kind, budget,
    seed, tile); the dense parameters are copied from `model`. ROAST's `scale_unit` (its array's
    init std, each layer's scale its dense init std over it) defaults to roast_scale_unit; a
    checkpoint header without one was made with unit 1 (see compress_from_header).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown hashing kind '{kind}'; valid: {list(KINDS)}")
    if isinstance(model, CONTAINERS):
        raise ValueError(f"wrap the {type(model).__name__} in a module: it cannot hold the array")
    if hasattr(model, "hashing_spec") or hasattr(model, "roast_array"):
        raise ValueError("the model is already hashed (it has a hashing_spec or roast_array)")
    compressed = copy.deepcopy(model)
    layers = [
        (name, module) for name, module in compressed.named_modules() if hashed_matrices(module)
    ]
    matrices = [matrix for _, module in layers for matrix in hashed_matrices(module)]
    hashed_count = sum(rows * cols for rows, cols, _ in matrices)
    dense_count = sum(parameter.numel() for parameter in compressed.parameters()) - hashed_count
    array_size = budget - dense_count
    if array_size < 1:
        raise ValueError(
            f"budget {budget} is below the {dense_count} parameters that stay dense "
            f"(biases, norms) plus at least one hashed slot"
        )
    virtual_weights: list[nn.Module]
    if kind == "roast":
        tile = fitting_tile(array_size, tile)
        if scale_unit is None:
            scale_unit = roast_scale_unit(matrices)
        scale_unit = float(scale_unit)
        array = RoastArray(array_size, tile, seed, std=scale_unit)
        virtual_weights = [
            RoastWeight(array, index, rows, cols, std / scale_unit)
            for index, (rows, cols, std) in enumerate(matrices)
        ]
    else:
        sizes = split_budget(array_size, [rows * cols for rows, cols, _ in matrices])
        # Each layer its own deterministic stream: its array values and its hash functions
        virtual_weights = [
            HashedNetWeight(rows, cols, size, std, seed=seed * 100_003 + index)
            for index, ((rows, cols, std), size) in enumerate(zip(matrices, sizes, strict=True))
        ]
    start = 0
    for name, module in layers:
        count = len(hashed_matrices(module))
        replacement = _virtual_layer(module, virtual_weights[start : start + count])
        start += count
        parent_name, _, child_name = name.rpartition(".")
        setattr(compressed.get_submodule(parent_name), child_name, replacement)
    if kind == "roast":
        compressed.roast_array = array
        # Each forward of the whole model gathers all its layers' tiles at once (pass_weight)
        # The cast: mypy does not see a type[X] as Hashable (python/mypy#11470); classes are
        compressed.__class__ = _in_one_pass(cast(Hashable, type(compressed)))
    unit = scale_unit if kind == "roast" else None
    spec_tile = cast(tuple[int, int], tuple(tile))
    # torch types Module.__setattr__'s value as Tensor | Module, but a module keeps any value
    compressed.hashing_spec = HashingSpec(kind, budget, seed, spec_tile, unit)  # type: ignore[assignment]
    device = next(model.parameters(), torch.empty(0)).device  # arrays and offsets: made on CPU
    return compressed.to(device)


def hashing_header(model: nn.Module) -> dict:
    """JSON-able {kind, budget, seed, tile, and for ROAST scale_unit} of a compress_model model."""
    spec = getattr(model, "hashing_spec", None)
    if not isinstance(spec, HashingSpec):
        raise ValueError(f"{type(model).__name__} was not made by compress_model")
    return spec.header()


def compress_from_header(model: nn.Module, header: dict) -> nn.Module:
    """compress_model(model, ...) with a hashing_header's values: ready for load_state_dict.

    A ROAST header without scale_unit predates it: its array was drawn with std 1 and each layer
    scaled by its dense init std, which is unit 1.
    """
    return compress_model(
        model,
        header["kind"],
        int(header["budget"]),
        int(header["seed"]),
        tuple(header["tile"]),
        scale_unit=float(header.get("scale_unit", 1.0)) if header["kind"] == "roast" else None,
    )
