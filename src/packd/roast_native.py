"""ROAST's tile gather and gradient scatter as two C loops, compiled on first use.

In PyTorch ops, a training step reads each layer's tiles with an index_select, scales them with
a mul_, crops the padded edge tiles with a slice, and in backward builds every weight's slot
index (an int64 broadcast add over the whole virtual matrix), scales the gradient and scatters
it. At batch 1 those passes over the virtual matrix, and an autograd node or two per op, cost
more than the matmuls. The loops here do each direction in one pass over all layers: read
scale * tile slots straight into each (rows, cols) matrix, and add scale * gradient straight
onto the slots, with no index materialised and nothing cropped.

Same arithmetic in the same order as the PyTorch path (one float32 multiply per weight, the
additions in the matrix's row-major order, layer after layer), so either path gives the same
bits; `-ffp-contract=off` keeps the compiler from fusing the multiply and add.

The library is built with the C compiler (`$CC`, else `cc`) into a cache folder keyed by the
source's hash, written under a temporary name and renamed, so parallel jobs can build it at
once. Without a compiler, or with PACKD_ROAST_NATIVE=0, or for tensors that are not float32 on
the CPU, ROAST runs the PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

LOGGER = logging.getLogger("packd.roast_native")

SOURCE = r"""
#include <stdint.h>

/* Part p is a (rows x cols) matrix over a grid of tiles (tile_rows x tile_cols) whose start
   slots are offsets[tile row][tile column]; row r of tile row t reads slots start + r * tile_cols
   onwards. plan[p] = {address of offsets, grid columns, rows, cols}. */

void roast_gather(int64_t n_parts, const int64_t *plan, const float *scales,
                  int64_t tile_rows, int64_t tile_cols, const float *array,
                  const int64_t *outputs) {
    for (int64_t p = 0; p < n_parts; p++) {
        const int64_t *offsets = (const int64_t *)(intptr_t)plan[4 * p];
        int64_t grid_cols = plan[4 * p + 1], rows = plan[4 * p + 2], cols = plan[4 * p + 3];
        float scale = scales[p];
        float *out = (float *)(intptr_t)outputs[p];
        for (int64_t i = 0; i < rows; i++) {
            const int64_t *starts = offsets + (i / tile_rows) * grid_cols;
            int64_t within = (i % tile_rows) * tile_cols;
            float *out_row = out + i * cols;
            for (int64_t j = 0; j < grid_cols; j++) {
                const float *tile = array + starts[j] + within;
                int64_t first = j * tile_cols;
                int64_t count = cols - first < tile_cols ? cols - first : tile_cols;
                for (int64_t k = 0; k < count; k++) out_row[first + k] = tile[k] * scale;
            }
        }
    }
}

/* grad_array[slot] += scale * grad of every weight read from slot; a zero address skips a part
   (a layer the loss did not reach). */
void roast_scatter_add(int64_t n_parts, const int64_t *plan, const float *scales,
                       int64_t tile_rows, int64_t tile_cols, const int64_t *grads,
                       float *grad_array) {
    for (int64_t p = 0; p < n_parts; p++) {
        const float *grad = (const float *)(intptr_t)grads[p];
        if (grad == 0) continue;
        const int64_t *offsets = (const int64_t *)(intptr_t)plan[4 * p];
        int64_t grid_cols = plan[4 * p + 1], rows = plan[4 * p + 2], cols = plan[4 * p + 3];
        float scale = scales[p];
        for (int64_t i = 0; i < rows; i++) {
            const int64_t *starts = offsets + (i / tile_rows) * grid_cols;
            int64_t within = (i % tile_rows) * tile_cols;
            const float *grad_row = grad + i * cols;
            for (int64_t j = 0; j < grid_cols; j++) {
                float *slots = grad_array + starts[j] + within;
                int64_t first = j * tile_cols;
                int64_t count = cols - first < tile_cols ? cols - first : tile_cols;
                for (int64_t k = 0; k < count; k++) slots[k] += grad_row[first + k] * scale;
            }
        }
    }
}
"""

FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off"]


def cache_dir() -> Path:
    """$PACKD_CACHE_DIR, else $XDG_CACHE_HOME/packd, else ~/.cache/packd."""
    if os.environ.get("PACKD_CACHE_DIR"):
        return Path(os.environ["PACKD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "packd"


def build(compiler: str, folder: Path) -> Path:
    """The compiled library in `folder`, built unless a file of this source's hash is there."""
    key = hashlib.sha256("\0".join([SOURCE, compiler, *FLAGS]).encode()).hexdigest()[:16]
    library = folder / f"roast_tiles-{platform.machine()}-{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        source = Path(scratch) / "roast_tiles.c"
        source.write_text(SOURCE)
        built = Path(scratch) / library.name
        subprocess.run(
            [compiler, *FLAGS, "-o", str(built), str(source)],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(built, library)  # atomic: a parallel job sees the whole file or none
    return library


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (logged once) where they cannot be built or are turned off."""
    if os.environ.get("PACKD_ROAST_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        LOGGER.warning("no C compiler '%s': ROAST runs its PyTorch path (slower)", compiler)
        return None
    try:
        try:
            path = build(compiler, cache_dir())
        except OSError:  # a read-only home: build in the temporary folder instead
            path = build(compiler, Path(tempfile.gettempdir()) / "packd")
        kernels = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        LOGGER.warning("ROAST's C kernels failed to build (%s): PyTorch path", detail)
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int64
    signature = (integer, pointer, pointer, integer, integer, pointer, pointer)
    for function in (kernels.roast_gather, kernels.roast_scatter_add):
        function.argtypes, function.restype = signature, None
    return kernels


def _loaded() -> ctypes.CDLL:
    """library(), where the caller has checked usable()."""
    kernels = library()
    if kernels is None:
        raise RuntimeError("ROAST's C kernels are not loaded; check usable() first")
    return kernels


def usable(weight: torch.Tensor) -> bool:
    """Whether the kernels can serve a ROAST array: contiguous float32 on the CPU, and built."""
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and weight.is_contiguous()
        and library() is not None
    )


def plan(parts: list[tuple[torch.Tensor, int, int]]) -> torch.Tensor:
    """The kernels' int64 plan of (offsets, rows, cols) parts; the offsets must stay alive."""
    rows = []
    for offsets, matrix_rows, matrix_cols in parts:
        if not offsets.is_contiguous() or offsets.dtype != torch.int64:
            raise ValueError("tile offsets must be a contiguous int64 tensor")
        rows.append([offsets.data_ptr(), offsets.shape[1], matrix_rows, matrix_cols])
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)


def gather(
    array: torch.Tensor,
    tile: tuple[int, int],
    part_plan: torch.Tensor,
    scales: torch.Tensor,
    shapes: list[tuple[int, int]],
) -> list[torch.Tensor]:
    """Each part's (rows, cols) matrix of scale * its tiles' slots of `array`."""
    if not array.is_contiguous():
        raise ValueError("the ROAST array must be contiguous")
    outputs = [torch.empty(shape, dtype=array.dtype) for shape in shapes]
    addresses = torch.tensor([output.data_ptr() for output in outputs], dtype=torch.int64)
    _loaded().roast_gather(
        len(outputs),
        part_plan.data_ptr(),
        scales.data_ptr(),
        tile[0],
        tile[1],
        array.data_ptr(),
        addresses.data_ptr(),
    )
    return outputs


def scatter_add(
    grad_array: torch.Tensor,
    tile: tuple[int, int],
    part_plan: torch.Tensor,
    scales: torch.Tensor,
    grads: list[torch.Tensor | None],
) -> torch.Tensor:
    """grad_array (contiguous float32) += scale * each part's gradient, onto the slots it read."""
    contiguous = [None if grad is None else grad.contiguous() for grad in grads]
    addresses = torch.tensor(
        [0 if grad is None else grad.data_ptr() for grad in contiguous], dtype=torch.int64
    )
    _loaded().roast_scatter_add(
        len(contiguous),
        part_plan.data_ptr(),
        scales.data_ptr(),
        tile[0],
        tile[1],
        addresses.data_ptr(),
        grad_array.data_ptr(),
    )
    return grad_array
