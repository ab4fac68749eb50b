"""The LLC replay of a trace's access stream with prefetches, and its report.

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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

from packd.cache import CacheLevel
from packd.prefetch.files import Prefetches, _as_lines, _as_stream, _line_shift


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
    lines, instr_ids = _as_stream(block_addresses, instr_ids)
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
