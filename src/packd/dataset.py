"""Model inputs (address segmentation), delta-bitmap labels, instr_id splits and .npz storage.

A trace is a DataFrame in access order with columns `instr_id`, `pc` and either `block_address`
or `addr` (byte address; block = addr >> 6, 64-byte lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the dataset stage gets its frames from trace_io; training jobs need no pandas
    import pandas as pd

from packd.atomic import atomic_path

BLOCK_BITS = 6  # 64-byte cache lines
PACKED_LABELS_KEY = "labels_packed"
SPLIT_NAMES = ("train", "val", "test")


def trace_block_addresses(trace: pd.DataFrame) -> np.ndarray:
    """Block addresses (int64) of a trace, from `block_address` or `addr >> 6`."""
    if "block_address" in trace.columns:
        return trace["block_address"].to_numpy().astype(np.int64)
    if "addr" in trace.columns:
        return (trace["addr"].to_numpy().astype(np.uint64) >> np.uint64(BLOCK_BITS)).astype(
            np.int64
        )
    raise ValueError(f"trace needs a 'block_address' or 'addr' column, has {list(trace.columns)}")


def _history_windows(values: np.ndarray, history: int) -> np.ndarray:
    """Rows i-history+1..i for each i >= history-1, shape (n - history + 1, history)."""
    return np.lib.stride_tricks.sliding_window_view(values, history).copy()


def segment_addresses(
    block_addresses: np.ndarray, history: int = 10, chunks: int = 10, chunk_bits: int = 6
) -> np.ndarray:
    """Address-segmented inputs, float32 (n - history + 1, history, chunks) in [0, 1).

    Row r is access i = r + history - 1 (the first access with a full history): its `history`
    block addresses oldest first, current last, each cut into `chunks` chunks of `chunk_bits`
    bits, lowest chunk first, divided by 2**chunk_bits.
    """
    block_addresses = np.asarray(block_addresses).astype(np.uint64)
    if block_addresses.size < history:
        return np.zeros((0, history, chunks), dtype=np.float32)
    shifts = np.arange(chunks, dtype=np.uint64) * np.uint64(chunk_bits)
    mask = np.uint64((1 << chunk_bits) - 1)
    chunk_values = (block_addresses[:, None] >> shifts[None, :]) & mask  # (n, chunks)
    per_access = (chunk_values.astype(np.float32) / np.float32(2**chunk_bits)).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(per_access, history, axis=0)
    # sliding_window_view puts the window axis last: (n', chunks, history) -> (n', history, chunks)
    return np.ascontiguousarray(windows.transpose(0, 2, 1))


def delta_bitmap_labels(
    block_addresses: np.ndarray,
    look_forward: int = 128,
    delta_bound: int = 128,
    label_offset: int = 0,
) -> np.ndarray:
    """Multi-hot future deltas, bool (n, 2 * delta_bound), one row per access.

    For access i the deltas block[j] - block[i], j in i+label_offset+1..i+label_offset+look_forward
    (only those inside the array: the last accesses see fewer), with 0 < |d| <= delta_bound: +d
    sets bit d-1 and -d sets bit 2*delta_bound - d (so -1 is the last bit). label_offset skips the
    first accesses after i: a prefetch for one of them could not arrive in time.
    """
    if label_offset < 0:
        raise ValueError(f"label_offset must be >= 0, got {label_offset}")
    block_addresses = np.asarray(block_addresses).astype(np.int64)
    n = block_addresses.size
    labels = np.zeros((n, 2 * delta_bound), dtype=bool)
    for offset in range(label_offset + 1, min(label_offset + look_forward, n - 1) + 1):
        deltas = block_addresses[offset:] - block_addresses[:-offset]
        rows = np.flatnonzero((deltas != 0) & (np.abs(deltas) <= delta_bound))
        in_range = deltas[rows]
        bits = np.where(in_range > 0, in_range - 1, 2 * delta_bound + in_range)
        labels[rows, bits] = True
    return labels


def build_split_arrays(
    trace: pd.DataFrame,
    history: int = 10,
    look_forward: int = 128,
    delta_bound: int = 128,
    chunks: int = 10,
    chunk_bits: int = 6,
    label_offset: int = 0,
) -> dict[str, np.ndarray]:
    """Inputs, labels and side features for ONE contiguous trace segment (split first: no leakage).

    Keeps accesses with a full history and a full look-forward window inside the segment, and at
    least one in-range future delta. An access within label_offset + look_forward of the
    segment's end is dropped: its window would be cut short (fewer label bits), which would bias
    a threshold chosen on such samples, and extending it would let labels see another split. The
    label window starts label_offset accesses ahead (delta_bitmap_labels). Keys: inputs, labels,
    block_addresses, pcs, deltas, instr_id.
    """
    block_addresses = trace_block_addresses(trace)
    pcs = trace["pc"].to_numpy().astype(np.uint64)
    instr_ids = trace["instr_id"].to_numpy().astype(np.uint64)
    n_bits = 2 * delta_bound
    if block_addresses.size < history:
        return {
            "inputs": np.zeros((0, history, chunks), np.float32),
            "labels": np.zeros((0, n_bits), bool),
            "block_addresses": np.zeros((0, history), np.int64),
            "pcs": np.zeros((0, history), np.uint64),
            "deltas": np.zeros((0, history - 1), np.int64),
            "instr_id": np.zeros((0,), np.uint64),
        }
    inputs = segment_addresses(block_addresses, history, chunks, chunk_bits)
    labels = delta_bitmap_labels(block_addresses, look_forward, delta_bound, label_offset)
    labels = labels[history - 1 :]
    address_windows = _history_windows(block_addresses, history)
    window_end = np.arange(history - 1, block_addresses.size) + label_offset + look_forward
    complete_window = window_end < len(block_addresses)
    keep = labels.any(axis=1) & complete_window
    return {
        "inputs": inputs[keep],
        "labels": labels[keep],
        "block_addresses": address_windows[keep],
        "pcs": _history_windows(pcs, history)[keep],
        "deltas": np.diff(address_windows, axis=1)[keep],
        "instr_id": instr_ids[history - 1 :][keep],
    }


def split_by_instr_id(
    trace: pd.DataFrame, warmup: float, train: float, val: float, val_blocks: int = 1
) -> dict[str, list[pd.DataFrame]]:
    """Train/val/test by fractions of the instr_id span, each a list of contiguous pieces.

    Skip the first `warmup`; the next `train` is the training region; everything after it is
    test (one piece). The training region is cut into `val_blocks` equal blocks and the LAST `val`
    fraction of each block validates, so with val_blocks > 1 the validation part samples every
    phase of the training region (e.g. every trial of a kernel) instead of only its end: a model's
    threshold, chosen there, then fits the phase mix it was trained on.
    """
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup must be in [0, 1), got {warmup}")
    if not 0.0 < train < 1.0:
        raise ValueError(f"train must be in (0, 1), got {train}")
    if warmup + train >= 1.0:
        raise ValueError(f"train must leave room for test: warmup + train = {warmup + train} >= 1")
    if not 0.0 < val < 1.0:
        raise ValueError(f"val must be in (0, 1) (a fraction of the train region), got {val}")
    if val_blocks < 1:
        raise ValueError(f"val_blocks must be at least 1, got {val_blocks}")
    instr_ids = trace["instr_id"].to_numpy().astype(np.float64)
    if instr_ids.size == 0:
        raise ValueError("trace is empty")
    first, last = instr_ids.min(), instr_ids.max()
    span = last - first
    train_start = first + warmup * span
    train_end = train_start + train * span
    block_span = train * span / val_blocks
    pieces: dict[str, list[pd.DataFrame]] = {"train": [], "val": [], "test": []}
    for block in range(val_blocks):
        block_start = train_start + block * block_span
        # The last block ends exactly at train_end (no rounding gap before the test part).
        block_end = train_end if block == val_blocks - 1 else block_start + block_span
        val_start = block_end - val * block_span
        for name, low, high in (("train", block_start, val_start), ("val", val_start, block_end)):
            piece = trace[(instr_ids >= low) & (instr_ids < high)].reset_index(drop=True)
            if not piece.empty:
                pieces[name].append(piece)
    test = trace[instr_ids >= train_end].reset_index(drop=True)
    if not test.empty:
        pieces["test"].append(test)
    for name, split_pieces in pieces.items():
        if not split_pieces:
            raise ValueError(
                f"split '{name}' is empty (instr_id span [{first:.0f}, {last:.0f}], "
                f"warmup={warmup}, train={train}, val={val}, val_blocks={val_blocks})"
            )
    return pieces


def build_pieces_arrays(pieces: list[pd.DataFrame], **kwargs: int) -> dict[str, np.ndarray]:
    """build_split_arrays of each contiguous piece, concatenated: no window spans a gap."""
    per_piece = [build_split_arrays(piece, **kwargs) for piece in pieces]
    return {key: np.concatenate([arrays[key] for arrays in per_piece]) for key in per_piece[0]}


def subset_samples(arrays: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The samples selected by a boolean mask or index array, in every array of a split."""
    return {key: values[keep] for key, values in arrays.items()}


def subsample_split(
    arrays: dict[str, np.ndarray], limit: int, seed: int, split_index: int
) -> dict[str, np.ndarray]:
    """A seeded random subset of limit samples, kept in order (all of them when fewer).

    Samples carry their own history window, so a random subset of the whole split keeps every
    phase of the program (the first `limit` would keep only the first).
    """
    count = len(arrays["labels"])
    if count <= limit:
        return arrays
    rng = np.random.default_rng([seed, split_index])
    return subset_samples(arrays, np.sort(rng.choice(count, size=limit, replace=False)))


def save_split(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write split arrays to .npz atomically; labels are bit-packed along axis 1."""
    path = Path(path)
    to_store: dict[str, Any] = {key: value for key, value in arrays.items() if key != "labels"}
    labels = np.asarray(arrays["labels"], dtype=bool)
    to_store[PACKED_LABELS_KEY] = np.packbits(labels, axis=1)
    to_store["label_bits"] = np.array(labels.shape[1], dtype=np.int64)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **to_store)


def load_split(path: str | Path) -> dict[str, np.ndarray]:
    """Read arrays written by save_split, with labels unpacked to bool (n, bits)."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    label_bits = int(arrays.pop("label_bits"))
    packed = arrays.pop(PACKED_LABELS_KEY)
    arrays["labels"] = np.unpackbits(packed, axis=1, count=label_bits).astype(bool)
    return arrays
