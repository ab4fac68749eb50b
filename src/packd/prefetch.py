"""Prefetch evaluation: prefetch files, an LLC replay with prefetches, and classic prefetchers.

Prefetches follow the ML Prefetching Competition: one ``instr_id prefetch_address`` line per
prefetch (address in hex, no ``0x``), at most ``degree`` per load, in instr_id order. A prefetch
named by a load's instr_id is issued when that load reaches the LLC.

The replay runs the LLC access stream of a trace (the accesses that missed L2) through one
set-associative true-LRU level with the same lookup, fill and victim rules as
:mod:`packd.cache`, so with no prefetches it reproduces the trace's ``llc_hit`` flags. A prefetch
issued at access ``t`` is in flight until just before access ``t + distance``, when it fills its
line (at MRU, without counting as a demand access). What becomes of each issued prefetch:

- late: a demand access missed on its line while it was in flight, i.e. after the access that
  issued it and before its fill (the demand fetches the line itself and the prefetch is
  dropped; a miss makes at most one prefetch late, the earliest issued);
- redundant: not late, and its line was already cached when it was due to fill (dropped, no
  memory traffic);
- filled: it fetched its line from memory;
- in flight at the end: not late, and due after the stream ends.

A demand hit on a filled line not used before makes that prefetch useful, counted once per fill.
Accuracy is useful / filled, as in ChampSim and the ML Prefetching Competition (redundant and
late prefetches cost no fill and do not count). Prefetching into the LLC leaves L1 and L2
untouched, so the stream stays the same.

Classic prefetchers read the same stream and return prefetches in the same form, so the replay
treats them like a model's: next-line, IP-stride and best-offset (Michaud, HPCA 2016).

The prefetch filter (:func:`filter_prefetches`, TransFetch's post-processing) sits between a
prefetcher's ranked candidates and the prefetch file, for models and classic prefetchers alike:
it skips a candidate line demanded or prefetched within the last ``window`` accesses and fills
each load's ``degree`` from its next-ranked candidates.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np

from packd.atomic import atomic_path
from packd.cache import CacheLevel

__all__ = [
    "BEST_OFFSET_OFFSETS",
    "CLASSIC_PREFETCHERS",
    "DEFAULT_DEGREE",
    "DEFAULT_DISTANCE",
    "DEFAULT_FILTER_WINDOW",
    "PrefetchReport",
    "Prefetches",
    "ReplayCounts",
    "best_offset_prefetches",
    "bit_deltas",
    "classic_prefetches",
    "evaluate_prefetches",
    "filter_prefetches",
    "ip_stride_prefetches",
    "limit_per_load",
    "llc_hit_flags",
    "next_line_prefetches",
    "prefetches_from_scores",
    "ranked_candidates",
    "read_prefetch_file",
    "replay_llc",
    "write_prefetch_file",
]

DEFAULT_DEGREE = 2  # the competition's limit of prefetches per load
# A prefetch fills its line this many LLC accesses after the load that issued it: a DRAM fill
# (about 200 cycles) outlasts a few LLC accesses of a memory-bound loop, and 1 would count a
# prefetch for the very next access as timely. The workflow's replays use it.
DEFAULT_DISTANCE = 4
# The prefetch filter skips a line demanded or prefetched within this many accesses (this one
# included); in hardware, a table of the last 64 accesses' lines and their prefetches (64 *
# (1 + degree) entries). It spans the fill distance many times over, so a line in flight or just
# filled is not asked for again, and it is far shorter than an LLC line's lifetime (thousands of
# accesses), so a line it skips is all but surely still cached.
DEFAULT_FILTER_WINDOW = 64


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


# ---------------------------------------------------------------------------------------------
# Prefetches and prefetch files
# ---------------------------------------------------------------------------------------------


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
    scores = np.asarray(scores)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    block_addresses = np.asarray(block_addresses).astype(np.int64)
    if scores.ndim != 2 or not (scores.shape[0] == instr_ids.size == block_addresses.size):
        raise ValueError(
            f"scores must be (n, bits) with n instr_ids and block addresses, got {scores.shape}, "
            f"{instr_ids.shape}, {block_addresses.shape}"
        )
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
    scores = np.asarray(scores)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    block_addresses = np.asarray(block_addresses).astype(np.int64)
    if scores.ndim != 2 or not (scores.shape[0] == instr_ids.size == block_addresses.size):
        raise ValueError(
            f"scores must be (n, bits) with n instr_ids and block addresses, got {scores.shape}, "
            f"{instr_ids.shape}, {block_addresses.shape}"
        )
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


# ---------------------------------------------------------------------------------------------
# LLC replay
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _lookup(tags, stamps, base, ways, line):  # pragma: no cover - compiled
    """(way holding line or -1, LRU victim: invalid ways first), as packd.cache._simulate."""
    victim = base
    oldest = stamps[base]
    for way in range(base, base + ways):
        if tags[way] == line:
            return way, victim
        if stamps[way] < oldest:
            oldest = stamps[way]
            victim = way
    return -1, victim


@numba.njit(cache=True, nogil=True)
def _replay(lines, fill_at, fill_lines, distance, set_mask, ways, hits):  # pragma: no cover
    """Replay demand lines with prefetch fills (sorted by fill_at); returns the counts."""
    n_sets = set_mask + 1
    tags = np.full(n_sets * ways, -1, dtype=np.int64)
    stamps = np.full(n_sets * ways, -1, dtype=np.int64)
    prefetched = np.zeros(n_sets * ways, dtype=np.bool_)
    late_flags = np.zeros(fill_lines.shape[0], dtype=np.bool_)
    clock = 0
    next_fill = 0  # prefetches before it have filled or been dropped
    next_issue = 0  # prefetches from next_fill up to it are in flight
    filled = 0
    redundant = 0
    late = 0
    useful = 0
    misses = 0
    for i in range(lines.shape[0]):
        while next_fill < fill_lines.shape[0] and fill_at[next_fill] <= i:
            line = fill_lines[next_fill]
            is_late = late_flags[next_fill]
            next_fill += 1
            if is_late:  # counted late when a demand missed on its line; it fetches nothing
                continue
            way, victim = _lookup(tags, stamps, (line & set_mask) * ways, ways, line)
            if way >= 0:
                redundant += 1
                continue
            tags[victim] = line
            stamps[victim] = clock
            prefetched[victim] = True
            clock += 1
            filled += 1
        # In flight: issued by an earlier access (fill_at - distance < i), not yet filled.
        next_issue = max(next_issue, next_fill)
        while next_issue < fill_lines.shape[0] and fill_at[next_issue] - distance < i:
            next_issue += 1
        line = lines[i]
        way, victim = _lookup(tags, stamps, (line & set_mask) * ways, ways, line)
        if way >= 0:
            hits[i] = True
            if prefetched[way]:
                useful += 1
                prefetched[way] = False
            stamps[way] = clock
        else:
            misses += 1
            tags[victim] = line
            stamps[victim] = clock
            prefetched[victim] = False
            # The first in-flight prefetch of this line, if any, arrives too late for it.
            for j in range(next_fill, next_issue):
                if fill_lines[j] == line and not late_flags[j]:
                    late_flags[j] = True
                    late += 1
                    break
        clock += 1
    return misses, filled, redundant, late, useful


@dataclass(frozen=True)
class ReplayCounts:
    """Counts of one replay: demand accesses and misses, and what became of the prefetches.

    issued = filled + redundant + late + in flight at the end (see the module docstring).
    """

    accesses: int
    misses: int
    issued: int
    filled: int
    redundant: int
    late: int
    useful: int


def _check_llc(llc: CacheLevel) -> None:
    if not isinstance(llc, CacheLevel):
        raise ValueError(f"llc must be a CacheLevel, got {type(llc).__name__}")


def _as_lines(block_addresses: np.ndarray) -> np.ndarray:
    lines = np.asarray(block_addresses)
    if lines.ndim != 1:
        raise ValueError(f"block_addresses must be 1-D, got shape {lines.shape}")
    lines = lines.astype(np.int64)
    if lines.size and lines.min() < 0:
        raise ValueError("block_addresses must be non-negative")
    return lines


def replay_llc(
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    prefetches: Prefetches,
    llc: CacheLevel,
    distance: int = 1,
) -> tuple[np.ndarray, ReplayCounts]:
    """Replay an LLC access stream with prefetches: (per-access hit flags, counts).

    block_addresses are in llc.line_bytes lines; instr_ids (non-decreasing) place each prefetch
    at the last access whose instr_id is <= its own (before the stream if none), and it fills
    `distance` (>= 1) accesses later. See the module docstring for the model.
    """
    _check_llc(llc)
    lines = _as_lines(block_addresses)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    if instr_ids.shape != lines.shape:
        raise ValueError(f"{instr_ids.size} instr_ids for {lines.size} block addresses")
    if instr_ids.size > 1 and (instr_ids[1:] < instr_ids[:-1]).any():
        raise ValueError("the stream's instr_ids must be non-decreasing")
    if distance < 1:
        raise ValueError(f"distance must be at least 1 access, got {distance}")
    issued_at = np.searchsorted(instr_ids, prefetches.instr_ids, side="right") - 1
    fill_at = issued_at.astype(np.int64) + distance
    order = np.argsort(fill_at, kind="stable")
    fill_lines = (prefetches.addresses >> np.uint64(_line_shift(llc.line_bytes))).astype(np.int64)
    hits = np.zeros(lines.size, dtype=bool)
    misses, filled, redundant, late, useful = _replay(
        lines, fill_at[order], fill_lines[order], distance, llc.sets - 1, llc.ways, hits
    )
    counts = ReplayCounts(
        accesses=int(lines.size),
        misses=int(misses),
        issued=len(prefetches),
        filled=int(filled),
        redundant=int(redundant),
        late=int(late),
        useful=int(useful),
    )
    return hits, counts


def llc_hit_flags(block_addresses: np.ndarray, llc: CacheLevel) -> np.ndarray:
    """Per-access LLC hit flags of the stream with no prefetches (the trace's llc_hit)."""
    lines = _as_lines(block_addresses)
    hits, _ = replay_llc(np.zeros(lines.size, np.uint64), lines, Prefetches.empty(), llc)
    return hits


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class PrefetchReport:
    """Prefetch figures of one replay against the no-prefetch baseline (ratios are 0 on a 0
    denominator). Counts of prefetches, as the module docstring defines them: issued (in the
    file), filled, redundant, late and useful; issued - filled - redundant - late were still in
    flight when the stream ended."""

    accesses: int
    issued: int
    filled: int
    redundant: int
    late: int
    useful: int
    baseline_misses: int
    misses: int

    @property
    def accuracy(self) -> float:
        """Useful prefetches per prefetch filled, as ChampSim and the ML Prefetching Competition
        count it: redundant and late prefetches fetch nothing and do not count."""
        return _ratio(self.useful, self.filled)

    @property
    def coverage(self) -> float:
        """Baseline misses turned into hits on prefetched lines: useful / baseline misses."""
        return _ratio(self.useful, self.baseline_misses)

    @property
    def miss_reduction(self) -> float:
        """Net fall in LLC misses, (baseline - with prefetching) / baseline; pollution lowers it."""
        return _ratio(self.baseline_misses - self.misses, self.baseline_misses)

    @property
    def extra_traffic(self) -> float:
        """Fills never used, per baseline miss."""
        return _ratio(self.filled - self.useful, self.baseline_misses)

    @property
    def traffic_ratio(self) -> float:
        """Lines fetched from memory (misses + fills) over the baseline's (its misses)."""
        return _ratio(self.misses + self.filled, self.baseline_misses)

    def as_dict(self) -> dict[str, float]:
        """Counts and ratios, for JSON and tables."""
        names = ("accuracy", "coverage", "miss_reduction", "extra_traffic", "traffic_ratio")
        return {**asdict(self), **{name: getattr(self, name) for name in names}}


def evaluate_prefetches(
    instr_ids: np.ndarray,
    block_addresses: np.ndarray,
    prefetches: Prefetches,
    llc: CacheLevel,
    distance: int = 1,
) -> PrefetchReport:
    """Replay the stream without and with the prefetches and compare (see PrefetchReport)."""
    baseline_hits = llc_hit_flags(block_addresses, llc)
    _, counts = replay_llc(instr_ids, block_addresses, prefetches, llc, distance)
    return PrefetchReport(
        accesses=counts.accesses,
        issued=counts.issued,
        filled=counts.filled,
        redundant=counts.redundant,
        late=counts.late,
        useful=counts.useful,
        baseline_misses=int(baseline_hits.size - np.count_nonzero(baseline_hits)),
        misses=counts.misses,
    )


# ---------------------------------------------------------------------------------------------
# Classic prefetchers
# ---------------------------------------------------------------------------------------------


def _check_degree(degree: int) -> None:
    if degree < 1:
        raise ValueError(f"degree must be at least 1, got {degree}")


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


#: The classic prefetchers the workflow compares the models with, by name.
CLASSIC_PREFETCHERS = ("next_line", "ip_stride", "best_offset")


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


# ---------------------------------------------------------------------------------------------
# Prefetch filter
# ---------------------------------------------------------------------------------------------


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
    lines = _as_lines(block_addresses)
    instr_ids = np.asarray(instr_ids).astype(np.uint64)
    if instr_ids.shape != lines.shape:
        raise ValueError(f"{instr_ids.size} instr_ids for {lines.size} block addresses")
    if instr_ids.size > 1 and (instr_ids[1:] < instr_ids[:-1]).any():
        raise ValueError("the stream's instr_ids must be non-decreasing")
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
