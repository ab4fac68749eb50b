"""Prefetches, from a model's scores to the ML-DPC prefetch file, through the prefetch filter.

Prefetches follow the ML Prefetching Competition: one ``instr_id prefetch_address`` line per
prefetch (address in hex, no ``0x``), at most ``degree`` per load, in instr_id order. A prefetch
named by a load's instr_id is issued when that load reaches the LLC.

The prefetch filter (:func:`filter_prefetches`, TransFetch's post-processing) sits between a
prefetcher's ranked candidates and the prefetch file, for models and classic prefetchers alike:
it skips a candidate line demanded or prefetched within the last ``window`` accesses and fills
each load's ``degree`` from its next-ranked candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from packd.atomic import atomic_path
from packd.plan import DEFAULT_DEGREE, DEFAULT_FILTER_WINDOW


@dataclass(frozen=True, eq=False)
class Prefetches:
    """Prefetches as two parallel arrays: the issuing load's instr_id and the byte address."""

    instr_ids: np.ndarray  # uint64
    addresses: np.ndarray  # uint64 byte addresses

    def __post_init__(self) -> None:
        instr_ids = np.asarray(self.instr_ids).astype(np.uint64, copy=False)
        addresses = np.asarray(self.addresses).astype(np.uint64, copy=False)
        if instr_ids.ndim != 1 or instr_ids.shape != addresses.shape:
            raise ValueError(
                f"instr_ids and addresses must be 1-D of one length, got shapes "
                f"{instr_ids.shape} and {addresses.shape}"
            )
        object.__setattr__(self, "instr_ids", instr_ids)
        object.__setattr__(self, "addresses", addresses)

    def __len__(self) -> int:
        return int(self.instr_ids.size)

    @classmethod
    def empty(cls) -> Prefetches:
        """No prefetches (the baseline)."""
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64))


def _line_shift(line_bytes: int) -> int:
    if line_bytes < 1 or line_bytes & (line_bytes - 1):
        raise ValueError(f"line_bytes must be a power of two, got {line_bytes}")
    return line_bytes.bit_length() - 1


def _from_lines(instr_ids: np.ndarray, lines: np.ndarray, line_bytes: int) -> Prefetches:
    """Prefetches of line numbers, dropping lines below 0 (no such address)."""
    keep = lines >= 0
    addresses = lines[keep].astype(np.uint64) << np.uint64(_line_shift(line_bytes))
    return Prefetches(np.asarray(instr_ids)[keep], addresses)


def _check_degree(degree: int) -> None:
    if degree < 1:
        raise ValueError(f"degree must be at least 1, got {degree}")


def _as_lines(block_addresses: np.ndarray) -> np.ndarray:
    lines = np.asarray(block_addresses)
    if lines.ndim != 1:
        raise ValueError(f"block_addresses must be 1-D, got shape {lines.shape}")
    lines = lines.astype(np.int64)
    if lines.size and lines.min() < 0:
        raise ValueError("block_addresses must be non-negative")
    return lines


def _as_stream(block_addresses: np.ndarray, instr_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An access stream's lines and instr_ids, checked: one instr_id a line, non-decreasing."""
    lines = _as_lines(block_addresses)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    if instr_ids.shape != lines.shape:
        raise ValueError(f"{instr_ids.size} instr_ids for {lines.size} block addresses")
    if instr_ids.size > 1 and (instr_ids[1:] < instr_ids[:-1]).any():
        raise ValueError("the stream's instr_ids must be non-decreasing")
    return lines, instr_ids


def _as_score_inputs(
    scores: np.ndarray, instr_ids: np.ndarray, block_addresses: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (n, bits) with their n instr_ids and current blocks, as arrays, checked."""
    scores = np.asarray(scores)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    block_addresses = np.asarray(block_addresses).astype(np.int64)
    if scores.ndim != 2 or not (scores.shape[0] == instr_ids.size == block_addresses.size):
        raise ValueError(
            f"scores must be (n, bits) with n instr_ids and block addresses, got {scores.shape}, "
            f"{instr_ids.shape}, {block_addresses.shape}"
        )
    return scores, instr_ids, block_addresses


def bit_deltas(label_bits: int) -> np.ndarray:
    """Block delta of each label bit (int64), the inverse of dataset.delta_bitmap_labels.

    With delta_bound = label_bits / 2: bit b < delta_bound is delta b + 1, the others are
    b - label_bits (so the last bit is -1).
    """
    if label_bits < 2 or label_bits % 2:
        raise ValueError(f"label_bits must be even and >= 2, got {label_bits}")
    bits = np.arange(label_bits, dtype=np.int64)
    return np.where(bits < label_bits // 2, bits + 1, bits - label_bits)


def prefetches_from_scores(
    scores: np.ndarray,
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    threshold: float,
    degree: int = DEFAULT_DEGREE,
    line_bytes: int = 64,
    chunk_rows: int = 65536,
) -> Prefetches:
    """A model's prefetches: per sample, its `degree` highest delta bits with score >= threshold.

    scores is (n, label_bits), one row per test sample; instr_ids and block_addresses are the
    sample's load and its current block (dataset's `block_addresses[:, -1]`). Each prefetch is
    (block + delta) * line_bytes, highest score first (ties: the lower bit first); blocks below 0
    are dropped. `scores >= threshold` matches packd.metrics, where the threshold was chosen.
    """
    scores, instr_ids, block_addresses = _as_score_inputs(scores, instr_ids, block_addresses)
    if degree < 1:
        raise ValueError(f"degree must be at least 1, got {degree}")
    deltas = bit_deltas(scores.shape[1])
    degree = min(degree, scores.shape[1])
    chosen_bits = np.empty((scores.shape[0], degree), dtype=np.int64)
    chosen_ok = np.empty((scores.shape[0], degree), dtype=bool)
    # Repeated argmax (first maximum: the lower bit on ties) on chunks keeps memory bounded.
    for start in range(0, scores.shape[0], chunk_rows):
        remaining = scores[start : start + chunk_rows].astype(np.float64)
        rows = np.arange(remaining.shape[0])
        for rank in range(degree):
            best = np.argmax(remaining, axis=1)
            chosen_bits[start : start + rows.size, rank] = best
            chosen_ok[start : start + rows.size, rank] = remaining[rows, best] >= threshold
            remaining[rows, best] = -np.inf
    lines = block_addresses[:, None] + deltas[chosen_bits]
    keep = chosen_ok & (lines >= 0)
    issuing = np.broadcast_to(instr_ids[:, None], lines.shape)
    return _from_lines(issuing[keep], lines[keep], line_bytes)


def ranked_candidates(
    scores: np.ndarray,
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    threshold: float,
    line_bytes: int = 64,
    chunk_rows: int = 8192,
) -> Prefetches:
    """Every delta bit with score >= threshold of each sample, highest score first (ties: the
    lower bit first), as candidate prefetches for filter_prefetches to choose from.

    Arguments as prefetches_from_scores, which keeps only the first `degree` of each sample
    (before dropping blocks below 0); here every bit at or above the threshold is kept, so that
    the filter can fill the degree from the next-ranked bits. Blocks below 0 are dropped.
    """
    scores, instr_ids, block_addresses = _as_score_inputs(scores, instr_ids, block_addresses)
    deltas = bit_deltas(scores.shape[1])
    issuing_parts, line_parts = [], []
    for start in range(0, scores.shape[0], chunk_rows):
        chunk = scores[start : start + chunk_rows].astype(np.float64)
        # A stable sort of the negated scores: the highest first, the lower bit first on ties,
        # as the repeated argmax of prefetches_from_scores.
        order = np.argsort(-chunk, axis=1, kind="stable")
        ranked_ok = np.take_along_axis(chunk, order, axis=1) >= threshold
        lines = block_addresses[start : start + chunk.shape[0], None] + deltas[order]
        keep = ranked_ok & (lines >= 0)
        issuing = np.broadcast_to(instr_ids[start : start + chunk.shape[0], None], lines.shape)
        issuing_parts.append(issuing[keep])  # row-major: each sample's bits in rank order
        line_parts.append(lines[keep])
    if not line_parts:
        return Prefetches.empty()
    return _from_lines(np.concatenate(issuing_parts), np.concatenate(line_parts), line_bytes)


def limit_per_load(prefetches: Prefetches, degree: int = DEFAULT_DEGREE) -> Prefetches:
    """The first `degree` prefetches of each instr_id (in instr_id order), as the file allows.

    Two LLC accesses can share an instr_id (one instruction, two loads); their prefetches then
    count against one load's limit, so the later ones are dropped.
    """
    _check_degree(degree)
    instr_ids = prefetches.instr_ids
    if instr_ids.size and (instr_ids[1:] < instr_ids[:-1]).any():
        raise ValueError("prefetches must be in non-decreasing instr_id order")
    if instr_ids.size == 0:
        return prefetches
    new_load = np.r_[True, instr_ids[1:] != instr_ids[:-1]]
    first_of_load = np.flatnonzero(new_load)[np.cumsum(new_load) - 1]
    keep = np.arange(instr_ids.size) - first_of_load < degree
    return Prefetches(instr_ids[keep], prefetches.addresses[keep])


@numba.njit(cache=True, nogil=True)
def _filter(
    line_ids, candidate_access, candidate_ids, n_ids, degree, window, keep
):  # pragma: no cover - compiled
    """Mark in keep the candidates the filter issues (see filter_prefetches)."""
    last_seen = np.full(n_ids, -(1 << 62), dtype=np.int64)  # access of the last demand or issue
    c = 0
    for i in range(line_ids.shape[0]):
        last_seen[line_ids[i]] = i
        issued = 0
        while c < candidate_ids.shape[0] and candidate_access[c] <= i:
            line = candidate_ids[c]
            if candidate_access[c] == i and issued < degree and i - last_seen[line] >= window:
                keep[c] = True
                last_seen[line] = i
                issued += 1
            c += 1


def filter_prefetches(
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    candidates: Prefetches,
    degree: int = DEFAULT_DEGREE,
    window: int = DEFAULT_FILTER_WINDOW,
    line_bytes: int = 64,
) -> Prefetches:
    """The prefetches a filter issues from ranked candidates: TransFetch's post-processing.

    instr_ids and block_addresses are the stream (lines of line_bytes, the LLC's); candidates
    are in instr_id order, each load's best first, and belong to the last access whose instr_id
    is <= theirs (as in replay_llc; none before the stream is kept). Walking the stream, each
    access first records its own line; then its candidates are taken in rank order, and one is
    skipped when its line was demanded or prefetched within the last `window` accesses (this one
    included: its own line, and a line one of its earlier candidates took), until `degree` are
    issued. An issued line counts as prefetched from then on; a skipped one does not. So the
    degree is filled from the next-ranked candidates, and a prefetcher with exactly `degree`
    candidates per load (the classic ones) only loses its repeats.
    """
    _check_degree(degree)
    if window < 1:
        raise ValueError(f"window must be at least 1 access, got {window}")
    lines, instr_ids = _as_stream(block_addresses, instr_ids)
    candidate_instr_ids = candidates.instr_ids
    if candidate_instr_ids.size > 1 and (candidate_instr_ids[1:] < candidate_instr_ids[:-1]).any():
        raise ValueError("candidates must be in non-decreasing instr_id order")
    access = np.searchsorted(instr_ids, candidate_instr_ids, side="right").astype(np.int64) - 1
    candidate_lines = (candidates.addresses >> np.uint64(_line_shift(line_bytes))).astype(np.int64)
    # Dense ids of the lines, so that the last sighting of each is an array entry.
    distinct, ids = np.unique(np.concatenate([lines, candidate_lines]), return_inverse=True)
    keep = np.zeros(len(candidates), dtype=bool)
    _filter(
        ids[: lines.size].astype(np.int64),
        access,
        ids[lines.size :].astype(np.int64),
        distinct.size,
        degree,
        window,
        keep,
    )
    return Prefetches(candidate_instr_ids[keep], candidates.addresses[keep])


def write_prefetch_file(path: str | Path, prefetches: Prefetches) -> None:
    """Write prefetches as `instr_id hex_address` lines, atomically; instr_ids must not decrease."""
    if len(prefetches) and (np.diff(prefetches.instr_ids.astype(np.int64)) < 0).any():
        raise ValueError(f"{path}: prefetches must be in non-decreasing instr_id order")
    lines = [
        f"{instr_id} {address:x}\n"
        for instr_id, address in zip(
            prefetches.instr_ids.tolist(), prefetches.addresses.tolist(), strict=True
        )
    ]
    with atomic_path(path) as temporary, open(temporary, "w") as handle:
        handle.writelines(lines)


_PREFETCH_LINE = re.compile(r"\s*(\d+)\s+(?:0[xX])?([0-9a-fA-F]+)\s*")
_UINT64_LIMIT = 1 << 64


def _line_error(path: Path, line_number: int, text: str, reason: str) -> ValueError:
    return ValueError(f"{path}, line {line_number}: {reason}: {text[:80]!r}")


def read_prefetch_file(path: str | Path, degree: int | None = None) -> Prefetches:
    """Read a prefetch file; a malformed line raises ValueError naming the file and line number.

    Each line is `instr_id address` (decimal, hex with optional 0x); instr_ids must not decrease,
    and with `degree` set no load may have more than `degree` prefetches.
    """
    path = Path(path)
    instr_ids: list[int] = []
    addresses: list[int] = []
    previous_instr_id = -1
    per_load = 0
    with open(path) as handle:
        for line_number, text in enumerate(handle, start=1):
            match = _PREFETCH_LINE.fullmatch(text)
            if match is None:
                raise _line_error(path, line_number, text, _diagnose(text))
            instr_id, address = int(match[1]), int(match[2], 16)
            if instr_id >= _UINT64_LIMIT or address >= _UINT64_LIMIT:
                raise _line_error(path, line_number, text, "value does not fit in 64 bits")
            if instr_id < previous_instr_id:
                raise _line_error(
                    path, line_number, text, f"instr_id decreases (after {previous_instr_id})"
                )
            per_load = per_load + 1 if instr_id == previous_instr_id else 1
            if degree is not None and per_load > degree:
                raise _line_error(
                    path, line_number, text, f"more than {degree} prefetches for one load"
                )
            previous_instr_id = instr_id
            instr_ids.append(instr_id)
            addresses.append(address)
    return Prefetches(np.array(instr_ids, np.uint64), np.array(addresses, np.uint64))


def _diagnose(text: str) -> str:
    """Why a line did not match: the field count, the instr_id or the address."""
    fields = text.split()
    if len(fields) != 2:
        return f"expected 2 fields (instr_id address), got {len(fields)}"
    if not fields[0].isdigit():
        return f"instr_id {fields[0]!r} is not a decimal integer"
    return f"address {fields[1]!r} is not hexadecimal"
