"""Classic prefetchers: next-line, IP-stride and best-offset (Michaud, HPCA 2016).

They read the same stream as a model and return prefetches in the same form, so the replay
(packd.prefetch.replay) treats them like a model's.
"""

from __future__ import annotations

import numba
import numpy as np

from packd.plan import CLASSIC_PREFETCHERS, DEFAULT_DEGREE
from packd.prefetch.files import Prefetches, _as_lines, _check_degree, _from_lines


def _five_smooth_numbers(limit: int) -> np.ndarray:
    """1..limit whose only prime factors are 2, 3 and 5."""
    numbers = []
    for number in range(1, limit + 1):
        rest = number
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            numbers.append(number)
    return np.array(numbers, dtype=np.int64)


#: Michaud's offset list (HPCA 2016): the 52 offsets in 1..256 with no prime factor above 5.
BEST_OFFSET_OFFSETS = _five_smooth_numbers(256)


def next_line_prefetches(
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    degree: int = DEFAULT_DEGREE,
    line_bytes: int = 64,
) -> Prefetches:
    """Next-line: on every access to line X, prefetch X + 1 .. X + degree."""
    _check_degree(degree)
    lines = _as_lines(block_addresses)
    targets = lines[:, None] + np.arange(1, degree + 1, dtype=np.int64)[None, :]
    issuing = np.repeat(np.asarray(instr_ids).astype(np.uint64), degree)
    return _from_lines(issuing, targets.ravel(), line_bytes)


@numba.njit(cache=True, nogil=True)
def _ip_stride(
    pc_ids, lines, n_pcs, degree, min_confidence, max_confidence, out_access, out_line
):  # pragma: no cover - compiled
    """Per-PC stride table; fills out_* and returns how many prefetches it made."""
    last_line = np.zeros(n_pcs, dtype=np.int64)
    stride = np.zeros(n_pcs, dtype=np.int64)
    confidence = np.zeros(n_pcs, dtype=np.int64)
    seen = np.zeros(n_pcs, dtype=np.bool_)
    count = 0
    for i in range(lines.shape[0]):
        pc = pc_ids[i]
        line = lines[i]
        if not seen[pc]:
            seen[pc] = True
            last_line[pc] = line
            continue
        new_stride = line - last_line[pc]
        if new_stride == 0:  # the same line again says nothing about the stride
            continue
        # Chen & Baer hysteresis: a stray stride lowers confidence before it replaces the stride.
        if new_stride == stride[pc]:
            confidence[pc] = min(confidence[pc] + 1, max_confidence)
        elif confidence[pc] > 0:
            confidence[pc] -= 1
        else:
            stride[pc] = new_stride
        last_line[pc] = line
        if confidence[pc] >= min_confidence:
            for k in range(1, degree + 1):
                out_access[count] = i
                out_line[count] = line + k * stride[pc]
                count += 1
    return count


def ip_stride_prefetches(
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    pcs: np.ndarray,
    degree: int = DEFAULT_DEGREE,
    line_bytes: int = 64,
    min_confidence: int = 1,
    max_confidence: int = 3,
) -> Prefetches:
    """IP-stride: per PC, the last line, stride and a saturating confidence counter.

    A repeat of the stride raises confidence (up to max_confidence), another stride lowers it
    and replaces the stride once confidence is 0; at confidence >= min_confidence an access to X
    prefetches X + k * stride, k = 1..degree. The table has one entry per PC (no capacity limit).
    """
    _check_degree(degree)
    lines = _as_lines(block_addresses)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    distinct_pcs, pc_ids = np.unique(np.asarray(pcs), return_inverse=True)
    out_access = np.empty(lines.size * degree, dtype=np.int64)
    out_line = np.empty(lines.size * degree, dtype=np.int64)
    count = _ip_stride(
        pc_ids.astype(np.int64),
        lines,
        distinct_pcs.size,
        degree,
        min_confidence,
        max_confidence,
        out_access,
        out_line,
    )
    return _from_lines(instr_ids[out_access[:count]], out_line[:count], line_bytes)


@numba.njit(cache=True, nogil=True)
def _best_offset(
    lines, offsets, degree, delay, rr_size, score_max, round_max, bad_score, out_access, out_line
):  # pragma: no cover - compiled
    """Best-offset learning and prefetching; fills out_* and returns how many prefetches."""
    recent = np.full(rr_size, -1, dtype=np.int64)
    scores = np.zeros(offsets.shape[0], dtype=np.int64)
    best_offset = 0  # 0: prefetching off until the first learning phase ends
    tested = 0
    rounds = 0
    count = 0
    for i in range(lines.shape[0]):
        line = lines[i]
        if i >= delay:  # the line accessed `delay` accesses ago has now been filled
            base = lines[i - delay]
            recent[(base ^ (base >> 8)) & (rr_size - 1)] = base
        candidate = line - offsets[tested]
        phase_over = False
        if candidate >= 0 and recent[(candidate ^ (candidate >> 8)) & (rr_size - 1)] == candidate:
            scores[tested] += 1
            phase_over = scores[tested] >= score_max
        tested += 1
        if tested == offsets.shape[0]:
            tested = 0
            rounds += 1
            phase_over = phase_over or rounds >= round_max
        if phase_over:
            winner = np.argmax(scores)
            best_offset = offsets[winner] if scores[winner] > bad_score else 0
            scores[:] = 0
            tested = 0
            rounds = 0
        if best_offset > 0:
            for k in range(1, degree + 1):
                out_access[count] = i
                out_line[count] = line + k * best_offset
                count += 1
    return count


def best_offset_prefetches(
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    degree: int = 1,
    line_bytes: int = 64,
    distance: int = 1,
    offsets: np.ndarray = BEST_OFFSET_OFFSETS,
    rr_size: int = 256,
    score_max: int = 31,
    round_max: int = 100,
    bad_score: int = 1,
) -> Prefetches:
    """Best-offset (Michaud, HPCA 2016): prefetch X + best offset on each access to X.

    Learning: each access X tests the next offset d of the list (round robin) and scores it when
    X - d is in the recent-requests (RR) table; a phase ends when a score reaches score_max or
    after round_max rounds over the list, and the top offset becomes the prefetch offset (or
    prefetching stops while its score is <= bad_score). The RR table (rr_size entries, direct
    mapped, full tags) receives each access's line `distance` accesses later, when a prefetch
    issued then would have been filled, so only timely offsets score. Simplifications: every
    stream access is eligible, there are no page limits, and degree > 1 adds X + k * offset.
    """
    _check_degree(degree)
    if rr_size < 1 or rr_size & (rr_size - 1):
        raise ValueError(f"rr_size must be a power of two, got {rr_size}")
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size == 0 or (offsets <= 0).any():
        raise ValueError("offsets must be a non-empty list of positive integers")
    lines = _as_lines(block_addresses)
    out_access = np.empty(lines.size * degree, dtype=np.int64)
    out_line = np.empty(lines.size * degree, dtype=np.int64)
    count = _best_offset(
        lines,
        offsets,
        degree,
        max(distance, 1),
        rr_size,
        score_max,
        round_max,
        bad_score,
        out_access,
        out_line,
    )
    issuing = np.asarray(instr_ids).astype(np.uint64)[out_access[:count]]
    return _from_lines(issuing, out_line[:count], line_bytes)


def classic_prefetches(
    name: str,
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    pcs: np.ndarray,
    degree: int = DEFAULT_DEGREE,
    line_bytes: int = 64,
    distance: int = 1,
) -> Prefetches:
    """One classic prefetcher's prefetches on a stream, by its name in CLASSIC_PREFETCHERS.

    All run at the same degree; `distance` is the replay's, which best-offset learns for.
    """
    if name == "next_line":
        return next_line_prefetches(instr_ids, block_addresses, degree, line_bytes)
    if name == "ip_stride":
        return ip_stride_prefetches(instr_ids, block_addresses, pcs, degree, line_bytes)
    if name == "best_offset":
        return best_offset_prefetches(instr_ids, block_addresses, degree, line_bytes, distance)
    raise ValueError(f"unknown prefetcher {name!r}; known: {', '.join(CLASSIC_PREFETCHERS)}")
