"""ROAST (Desai et al., ICML 2023): every hashed layer of a model reads its weight matrix, tile by
tile, from contiguous slices of ONE shared parameter array (`RoastArray`).

packd.hashing.compress_model builds a ROAST model; the tile gather and the gradient scatter run in
packd.roast_native's C loops where they serve, else in PyTorch ops (the two give the same bits).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from packd import roast_native
from packd.hashed_layers import HASH_PRIME, odd_hash_coefficients

DEFAULT_TILE = (32, 32)  # (rows, cols) of one ROAST tile: 4 KiB of float32 read contiguously


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

    hash_coefficients: torch.Tensor  # a buffer (register_buffer), typed for mypy

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

    array: RoastArray  # set past nn.Module.__setattr__ (not a submodule), typed for mypy
    offsets: torch.Tensor  # a buffer (register_buffer), typed for mypy

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
        assert self._row_starts is not None  # set at the first call: its key is never None
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
        assert weight is not None and offsets is not None  # registered in __init__, never None
        key = (weight.data_ptr(), weight._version, offsets.data_ptr(), offsets._version)
        if key != self._cache_key:
            # Already contiguous on both paths (see crop): no matmul copies a cropped edge tile
            self._cached_weight, self._cache_key = self._gather(), key
        assert self._cached_weight is not None  # set above whenever the key was reset
        return self._cached_weight


def fitting_tile(array_size: int, tile: tuple[int, int]) -> tuple[int, int]:
    """The tile, halved on both sides until at least 8 tiles fit the array: a budget as small as
    a tiny student's would otherwise leave no room to place a single tile."""
    rows, cols = tile
    while rows * cols * 8 > array_size and rows * cols > 1:
        rows, cols = max(1, rows // 2), max(1, cols // 2)
    return rows, cols
