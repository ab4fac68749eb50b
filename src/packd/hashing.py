"""ROAST and HashedNet: weight matrices read from small hashed arrays instead of stored densely.

ROAST (Desai et al., ICML 2023): every hashed layer of a model reads its weight matrix, tile by
tile, from contiguous slices of ONE shared parameter array (`RoastArray`). HashedNet (Chen et
al., 2015), the baseline: each layer owns its own array and every weight is hashed on its own,
with a random sign. `compress_model` turns any model of the project into either at a memory budget;
`hashing_header` and `compress_from_header` rebuild it for a checkpoint's state dict.

Virtual weight matrices use PyTorch's (out, in) layout; a Conv2d weight is (out, in * kh * kw).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from packd import roast_native

KINDS = ("roast", "hashednet")
DEFAULT_TILE = (32, 32)  # (rows, cols) of one ROAST tile: 4 KiB of float32 read contiguously
# A Mersenne prime: a coefficient below 2**31 times an index below 2**31 still fits in int64
HASH_PRIME = 2**31 - 1
# Containers iterate over their children in forward, so an extra `roast_array` child would run
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def odd_hash_coefficients(count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random odd int64 coefficients in [1, HASH_PRIME - 2] (odd, as ROAST draws them)."""
    halves = torch.randint(0, (HASH_PRIME - 1) // 2, (count,), generator=generator)
    return halves * 2 + 1


def dense_init_std(fan_in: int) -> float:
    """Std of PyTorch's default Linear/Conv2d/LSTM init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return 1.0 / math.sqrt(3.0 * fan_in)


def roast_scale_unit(matrices: list[tuple[int, int, float]]) -> float:
    """The ROAST array's init std: the mean, over all virtual weights, of their dense init std.

    Layer l then reads its weights as (std_l / unit) * slot, so the scales are relative (1 where
    every layer has the same fan-in) and average 1 over the virtual weights. An Adam step moves
    each slot by about lr whatever the gradient's scale, so a virtual weight moves by about
    scale * lr: with these scales about lr, as a dense layer's or HashedNet's weights do. With
    the paper's absolute scales (unit 1: std-1 array, scale = std_l) ROAST's weights moved about
    20x less than theirs at the same rate.
    """
    total = sum(rows * cols for rows, cols, _ in matrices)
    return math.fsum(rows * cols * std for rows, cols, std in matrices) / total


class RoastArray(nn.Module):
    """The one parameter array every ROAST layer of a model reads its weight tiles from."""

    def __init__(self, size: int, tile: tuple[int, int], seed: int, std: float = 1.0):
        super().__init__()
        tile_rows, tile_cols = tile
        if size <= tile_rows * tile_cols:
            raise ValueError(
                f"the ROAST array of {size} slots must exceed one {tile_rows}x{tile_cols} tile; "
                "raise the budget or use a smaller tile"
            )
        self.tile = (tile_rows, tile_cols)
        generator = torch.Generator().manual_seed(seed)
        # Std `std` (compress_model: roast_scale_unit); each layer's scale, std_l / std, then
        # gives its virtual weights the dense init's distribution
        uniform = torch.rand(size, generator=generator) * 2 - 1
        self.weight = nn.Parameter(uniform * (math.sqrt(3.0) * std))
        # a, b, c, d of h(l, i, j) = ((a*i + b*j + c*l + d) mod P) mod (size - tile size)
        self.register_buffer("hash_coefficients", odd_hash_coefficients(4, generator))
        self.readers: list[RoastWeight] = []  # a plain list: the readers are not submodules
        self._divisor: torch.Tensor | None = None
        # One model forward with autograd: every reader's matrix, gathered at its first read
        self._in_pass = False
        self._pass_weights: dict[int, torch.Tensor] | None = None
        # The C kernels' plans: of all readers (a training pass), of each alone (inference)
        self._native_plans: dict[tuple[int, ...], tuple] = {}

    def tile_offsets(self, layer_index: int, grid: tuple[int, int]) -> torch.Tensor:
        """Start slot of each tile (i, j) of layer `layer_index`: an int64 tensor of shape grid."""
        a, b, c, d = self.hash_coefficients.cpu()
        tile_rows = torch.arange(grid[0], dtype=torch.int64)[:, None]
        tile_cols = torch.arange(grid[1], dtype=torch.int64)[None, :]
        hashed = (a * tile_rows + b * tile_cols + c * layer_index + d) % HASH_PRIME
        tile_size = self.tile[0] * self.tile[1]
        return (hashed % (self.weight.numel() - tile_size)).to(self.hash_coefficients.device)

    def mark_stale(self) -> None:
        """Recompute the gradient divisor at the next backward (a reader's offsets changed)."""
        self._divisor = None

    def grad_divisor(self) -> torch.Tensor:
        """Per slot, the sum over the virtual weights read from it of their layer's scale**2."""
        divisor = self._divisor
        if divisor is None or divisor.device != self.weight.device:
            divisor = torch.zeros_like(self.weight, requires_grad=False)
            for reader in self.readers:
                slots = reader.element_slots()
                divisor.index_add_(0, slots, divisor.new_full(slots.shape, reader.scale**2))
            # An unread slot gets no gradient; 1 keeps 0 / 0 out of it
            divisor[divisor == 0] = 1.0
            self._divisor = divisor
        return divisor

    def open_pass(self) -> None:
        """A model forward starts: its layers share one gather (called by the model's forward)."""
        self._in_pass, self._pass_weights = True, None

    def close_pass(self) -> None:
        """The model forward ended: drop the pass's matrices (backward keeps what it needs)."""
        self._in_pass, self._pass_weights = False, None

    def pass_weight(self, reader: RoastWeight) -> torch.Tensor | None:
        """`reader`'s virtual matrix from the pass's one gather; None outside a training pass.

        A training step would otherwise run one gather node and one backward per layer, each
        with its own full-array gradient to sum: with tens of small layers those fixed costs
        outweigh the copying itself.
        """
        if not self._in_pass or not torch.is_grad_enabled():
            return None
        if self._pass_weights is None:
            matrices = read_matrices(self, self.readers)
            self._pass_weights = {id(r): m for r, m in zip(self.readers, matrices, strict=True)}
        return self._pass_weights.get(id(reader))

    def native_plan(self, readers: list[RoastWeight]) -> tuple:
        """(plan, scales, shapes, offsets) of `readers` for the C kernels, kept until a reader's
        offsets change (the plan holds their addresses)."""
        offsets = [reader.offsets for reader in readers]
        key = tuple((o.data_ptr(), o._version) for o in offsets)
        readers_key = tuple(id(reader) for reader in readers)
        kept = self._native_plans.get(readers_key)
        if kept is not None and kept[0] == key:
            return kept[1]
        shapes = [(reader.rows, reader.cols) for reader in readers]
        part_plan = roast_native.plan(
            [(o, rows, cols) for o, (rows, cols) in zip(offsets, shapes, strict=True)]
        )
        scales = torch.tensor([reader.scale for reader in readers], dtype=torch.float32)
        native = (part_plan, scales, shapes, offsets)  # offsets: the addresses stay valid
        self._native_plans[readers_key] = (key, native)
        return native


def read_matrices(array: RoastArray, readers: list[RoastWeight]) -> list[torch.Tensor]:
    """Each reader's (rows, cols) virtual matrix, in one autograd node: the C kernels where they
    serve (roast_native), else PyTorch ops; the two give the same bits."""
    if roast_native.usable(array.weight) and all(r.offsets.device.type == "cpu" for r in readers):
        return list(_GatherTiles.apply(array.weight, array, array.native_plan(readers)))
    parts = [(reader.row_starts(), reader.scale) for reader in readers]
    rows = _GatherTileRows.apply(array.weight, array, array.tile[1], parts)
    return [reader.crop(part) for reader, part in zip(readers, rows, strict=True)]


@functools.cache
def _in_one_pass(model_class: type[nn.Module]) -> type[nn.Module]:
    """A subclass of `model_class`, same name, whose forward with autograd is one ROAST pass.

    Not forward hooks: any hook sends every call of the model down nn.Module's slower path, and
    at batch 1 that cost a cached-ROAST LSTM's inference more than its weights' cache checks.
    """

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():  # inference: the layers read their caches
            return model_class.forward(self, *args, **kwargs)
        self.roast_array.open_pass()
        try:
            return model_class.forward(self, *args, **kwargs)
        finally:  # also when the forward raises: a later forward must not see this pass's rows
            self.roast_array.close_pass()

    return type(
        model_class.__name__, (model_class,), {"forward": forward, "__doc__": model_class.__doc__}
    )


class _GatherTileRows(torch.autograd.Function):
    """For each (row starts, scale) part: rows of `width` contiguous slots of the array's weight,
    one row per start, times the scale. One autograd node for all parts, so one backward.

    Backward adds each part's scaled row gradients back onto their slots and divides by the
    array's gradient divisor (ROAST's gradient scaling), without autograd going through an
    overlapping view.
    """

    @staticmethod
    def forward(ctx, weight, array, width, parts):
        windows = weight.as_strided((weight.numel() - width + 1, width), (1, 1))
        ctx.array, ctx.width, ctx.parts = array, width, parts
        ctx.set_materialize_grads(False)  # a part no layer read gets None, not a zero tensor
        return tuple(windows.index_select(0, starts).mul_(scale) for starts, scale in parts)

    @staticmethod
    def backward(ctx, *grad_parts):
        array = ctx.array
        grad_weight = torch.zeros_like(array.weight)
        columns = torch.arange(ctx.width, device=grad_weight.device)
        for (starts, scale), grad in zip(ctx.parts, grad_parts, strict=True):
            if grad is not None:
                slots = (starts[:, None] + columns).reshape(-1)
                # scatter_add_: the fastest CPU accumulation measured here (index_add_ took
                # about 2x as long, and index_add_ of whole rows with an alpha about 12x)
                grad_weight.scatter_add_(0, slots, grad.reshape(-1) * scale)
        return grad_weight.div_(array.grad_divisor()), None, None, None


class _GatherTiles(torch.autograd.Function):
    """_GatherTileRows's work on (rows, cols) matrices, done by roast_native's two C loops."""

    @staticmethod
    def forward(ctx, weight, array, native):
        part_plan, scales, shapes, _ = native
        ctx.array, ctx.native = array, native
        ctx.set_materialize_grads(False)  # a part no layer read gets None, not a zero tensor
        return tuple(roast_native.gather(weight, array.tile, part_plan, scales, shapes))

    @staticmethod
    def backward(ctx, *grad_parts):
        part_plan, scales, _, _ = ctx.native
        grad_weight = torch.zeros_like(ctx.array.weight)
        roast_native.scatter_add(grad_weight, ctx.array.tile, part_plan, scales, list(grad_parts))
        return grad_weight.div_(ctx.array.grad_divisor()), None, None


class RoastWeight(nn.Module):
    """A (rows x cols) virtual weight matrix: scale * tiles read from a shared RoastArray."""

    def __init__(self, array: RoastArray, layer_index: int, rows: int, cols: int, scale: float):
        super().__init__()
        tile_rows, tile_cols = array.tile
        self.rows, self.cols, self.scale = rows, cols, float(scale)
        grid = (math.ceil(rows / tile_rows), math.ceil(cols / tile_cols))
        # Not a submodule: the model owns the array once, so the state dict holds it once
        object.__setattr__(self, "array", array)
        self.register_buffer("offsets", array.tile_offsets(layer_index, grid))
        array.readers.append(self)
        array.mark_stale()
        # Crop only where the tiles overhang the matrix: each op costs a training step an
        # autograd node, and at batch 1 those fixed costs are most of ROAST's overhead
        self._cropped = (grid[0] * tile_rows, grid[1] * tile_cols) != (rows, cols)
        self._offsets_key: tuple | None = None
        self._row_starts: torch.Tensor | None = None
        self._cached_weight: torch.Tensor | None = None
        self._cache_key: tuple | None = None

    def row_starts(self) -> torch.Tensor:
        """First slot of each tile row, ordered so the gathered rows form the padded matrix."""
        key = (self.offsets.data_ptr(), self.offsets._version)
        if key != self._offsets_key:
            tile_rows, tile_cols = self.array.tile
            # A normal tensor even when made in inference mode: training saves it for backward
            with torch.inference_mode(False):
                within = torch.arange(tile_rows, device=self.offsets.device)[None, :, None]
                # (tile row i, row r in the tile, tile column j): row i*BK + r of the matrix
                starts = self.offsets[:, None, :] + within * tile_cols
                self._row_starts = starts.reshape(-1)
            if self._offsets_key is not None:
                self.array.mark_stale()
            self._offsets_key = key
        return self._row_starts

    def element_slots(self) -> torch.Tensor:
        """Slot of every virtual weight, row-major over the (rows, cols) matrix."""
        tile_cols = self.array.tile[1]
        columns = torch.arange(tile_cols, device=self.offsets.device)
        padded = (self.row_starts()[:, None] + columns).reshape(
            -1, self.offsets.shape[1] * tile_cols
        )
        return padded[: self.rows, : self.cols].reshape(-1)

    def crop(self, rows: torch.Tensor) -> torch.Tensor:
        """The (rows, cols) matrix of this reader's gathered tile rows (row_starts' order)."""
        padded = rows.view(-1, self.offsets.shape[1] * self.array.tile[1])
        # Contiguous, as the C kernels' matrices are: the matmuls' gradients then take the same
        # path, and the two give the same bits
        return padded[: self.rows, : self.cols].contiguous() if self._cropped else padded

    def _gather(self) -> torch.Tensor:
        matrix = self.array.pass_weight(self)
        if matrix is None:  # inference, or a layer called outside its model's forward
            (matrix,) = read_matrices(self.array, [self])
        return matrix

    def forward(self) -> torch.Tensor:
        """The virtual weight matrix; without autograd, cached until the array or offsets change."""
        if torch.is_grad_enabled():
            if self._cache_key is not None:  # training: free the inference copy
                # Past nn.Module.__setattr__, which took about 5 us a layer per step
                self.__dict__.update(_cached_weight=None, _cache_key=None)
            return self._gather()
        # Straight from the dicts: nn.Module's attribute fallback took about 2 us of this check,
        # paid by every hashed layer of every batch-1 call
        weight, offsets = self.array._parameters["weight"], self._buffers["offsets"]
        key = (weight.data_ptr(), weight._version, offsets.data_ptr(), offsets._version)
        if key != self._cache_key:
            # Already contiguous on both paths (see crop): no matmul copies a cropped edge tile
            self._cached_weight, self._cache_key = self._gather(), key
        return self._cached_weight


class HashedNetWeight(nn.Module):
    """A (rows x cols) virtual weight matrix: each entry a sign times a hashed slot of its array."""

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


class VirtualLinear(nn.Module):
    """nn.Linear whose weight comes from a RoastWeight or HashedNetWeight; the bias stays dense."""

    def __init__(self, virtual_weight: nn.Module, bias: torch.Tensor | None):
        super().__init__()
        self.virtual_weight = virtual_weight
        self.out_features, self.in_features = virtual_weight.rows, virtual_weight.cols
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs @ weight.T + bias."""
        return nn.functional.linear(inputs, self.virtual_weight(), self.bias)


class VirtualConv2d(nn.Module):
    """nn.Conv2d (zero padding) whose weight, flattened to (out, in * kh * kw), is hashed."""

    def __init__(self, virtual_weight: nn.Module, conv: nn.Conv2d):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode '{conv.padding_mode}' is not supported; use 'zeros'")
        self.virtual_weight = virtual_weight
        self.weight_shape = tuple(conv.weight.shape)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The convolution of nn.Conv2d with the virtual weight."""
        weight = self.virtual_weight().reshape(self.weight_shape)
        return nn.functional.conv2d(
            inputs, weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class VirtualLSTM(nn.Module):
    """nn.LSTM (unidirectional, no projection) whose input and recurrent matrices are hashed.

    Each layer's (4 * hidden, in) input matrix and (4 * hidden, hidden) recurrent matrix hold the
    four gates (input, forget, cell, output) stacked, as in nn.LSTM; the biases stay dense. The
    virtual matrices go to torch.lstm, the kernel nn.LSTM itself runs: the same equations, with
    the step loop in C++ rather than a handful of Python-dispatched ops per gate and step.
    """

    def __init__(
        self,
        lstm: nn.LSTM,
        input_weights: list[nn.Module],
        recurrent_weights: list[nn.Module],
    ):
        super().__init__()
        self.input_size, self.hidden_size = lstm.input_size, lstm.hidden_size
        self.num_layers, self.batch_first = lstm.num_layers, lstm.batch_first
        self.dropout, self.has_biases = lstm.dropout, lstm.bias
        self.input_weights = nn.ModuleList(input_weights)
        self.recurrent_weights = nn.ModuleList(recurrent_weights)
        for layer in range(self.num_layers if lstm.bias else 0):
            for kind in ("ih", "hh"):
                name = f"bias_{kind}_l{layer}"
                self.register_parameter(name, nn.Parameter(getattr(lstm, name).detach().clone()))

    def forward(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(output, (h_n, c_n)) of batched inputs, as nn.LSTM returns them; state defaults to 0."""
        if inputs.dim() != 3:
            raise ValueError(f"VirtualLSTM takes batched 3-D inputs, not shape {inputs.shape}")
        if state is None:
            batch = inputs.shape[0 if self.batch_first else 1]
            zeros = inputs.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        flat_weights = []
        for layer in range(self.num_layers):
            flat_weights += [self.input_weights[layer](), self.recurrent_weights[layer]()]
            if self.has_biases:
                flat_weights += [
                    getattr(self, f"bias_ih_l{layer}"),
                    getattr(self, f"bias_hh_l{layer}"),
                ]
        output, final_hidden, final_cell = torch.lstm(
            inputs,
            state,
            flat_weights,
            self.has_biases,
            self.num_layers,
            self.dropout,
            self.training,
            False,  # bidirectional
            self.batch_first,
        )
        return output, (final_hidden, final_cell)


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
        header = {
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
    return VirtualLSTM(module, virtual_weights[0::2], virtual_weights[1::2])


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


def fitting_tile(array_size: int, tile: tuple[int, int]) -> tuple[int, int]:
    """The tile, halved on both sides until at least 8 tiles fit the array: a budget as small as
    a tiny student's would otherwise leave no room to place a single tile."""
    rows, cols = tile
    while rows * cols * 8 > array_size and rows * cols > 1:
        rows, cols = max(1, rows // 2), max(1, cols // 2)
    return rows, cols


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
        compressed.__class__ = _in_one_pass(type(compressed))
    unit = scale_unit if kind == "roast" else None
    compressed.hashing_spec = HashingSpec(kind, budget, seed, tuple(tile), unit)
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
