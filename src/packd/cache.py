"""Set-associative LRU cache-hierarchy filter (numba).

Turns the stream of loads of an executed program into the per-access level that served each load,
so the accesses that reach the last-level cache (LLC) can be kept, as in the ML Prefetching
Competition's load traces.

Model (loads only):

* Each access looks up the first level; on a miss it goes to the next level, and so on down to
  memory. On the way back the line is filled into every level that missed.
* The hierarchy is non-inclusive and there is no back-invalidation: an eviction in one level
  leaves the other levels untouched.
* Replacement is true LRU within each set.
* Stores and write-backs are not modelled: every address is treated as a load, dirty lines do not
  exist, and an eviction writes nothing anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

__all__ = [
    "CHAMPSIM_DEFAULT",
    "CHAMPSIM_MEMORY_LATENCY",
    "CacheLevel",
    "llc_trace_from_loads",
    "model_cycles",
    "simulate_hierarchy",
]


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


@dataclass(frozen=True)
class CacheLevel:
    """One cache level: ``size_bytes`` split into ``ways``-way sets of ``line_bytes`` lines.

    ``latency`` (cycles) is keyword-only; it is used only by :func:`model_cycles`.
    Example: ``CacheLevel("L1D", 48 * 1024, 12, latency=5)``.
    """

    name: str
    size_bytes: int
    ways: int
    line_bytes: int = 64
    _: KW_ONLY
    latency: int

    def __post_init__(self) -> None:
        where = f"cache level {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{where}: name must be a non-empty string")
        for attr in ("size_bytes", "ways", "line_bytes", "latency"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{where}: {attr} must be an integer, got {value!r}")
        if self.size_bytes <= 0 or self.ways <= 0:
            raise ValueError(f"{where}: size_bytes and ways must be positive")
        if not _is_pow2(self.line_bytes) or self.line_bytes < 2:
            raise ValueError(
                f"{where}: line_bytes must be a power of two >= 2, got {self.line_bytes}"
            )
        if self.latency < 0:
            raise ValueError(f"{where}: latency must be >= 0, got {self.latency}")
        if self.size_bytes % (self.ways * self.line_bytes) != 0:
            raise ValueError(
                f"{where}: size_bytes {self.size_bytes} is not divisible by "
                f"ways * line_bytes = {self.ways * self.line_bytes}"
            )
        if not _is_pow2(self.sets):
            raise ValueError(f"{where}: number of sets {self.sets} is not a power of two")

    @property
    def sets(self) -> int:
        return self.size_bytes // (self.ways * self.line_bytes)


#: ChampSim's default single-core data hierarchy (LRU everywhere). The latencies are ChampSim-like
#: defaults chosen for the cycle model, not measurements of any machine.
CHAMPSIM_DEFAULT: tuple[CacheLevel, ...] = (
    CacheLevel("L1D", 48 * 1024, 12, 64, latency=5),  # 64 sets
    CacheLevel("L2", 512 * 1024, 8, 64, latency=10),  # 1024 sets
    CacheLevel("LLC", 2 * 1024 * 1024, 16, 64, latency=20),  # 2048 sets
)
#: ChampSim-like memory (DRAM) latency in cycles for :func:`model_cycles`.
CHAMPSIM_MEMORY_LATENCY = 200


def _check_levels(levels: Sequence[CacheLevel]) -> tuple[CacheLevel, ...]:
    levels = tuple(levels)
    if not levels:
        raise ValueError("the hierarchy needs at least one cache level")
    if len(levels) > 126:
        raise ValueError("at most 126 cache levels are supported (int8 hit levels)")
    for lv in levels:
        if not isinstance(lv, CacheLevel):
            raise ValueError(f"expected CacheLevel, got {type(lv).__name__}")
    return levels


def _as_int64_addresses(addresses: np.ndarray) -> np.ndarray:
    a = np.asarray(addresses)
    if a.ndim != 1:
        raise ValueError(f"addresses must be one-dimensional, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"addresses must be integers, got dtype {a.dtype}")
    if a.dtype == np.int64 or a.dtype == np.uint64:
        return np.ascontiguousarray(a).view(np.int64)
    if a.size and np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
        raise ValueError("addresses must be non-negative")
    return a.astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _simulate(addr, shifts, masks, set_masks, ways, offsets, tags, stamps, out):  # pragma: no cover
    n_levels = shifts.shape[0]
    for i in range(addr.shape[0]):
        a = addr[i]
        stamp = i
        lvl = 0
        while lvl < n_levels:
            # logical shift of the 64-bit pattern: mask away the sign extension
            line = (a >> shifts[lvl]) & masks[lvl]
            w = ways[lvl]
            base = offsets[lvl] + (line & set_masks[lvl]) * w
            hit = -1
            victim = base
            oldest = stamps[base]
            for j in range(base, base + w):
                if tags[j] == line:
                    hit = j
                    break
                s = stamps[j]
                if s < oldest:
                    oldest = s
                    victim = j
            if hit >= 0:
                stamps[hit] = stamp
                break
            # miss: the line will be filled here on the way back (LRU victim, invalid ways first)
            tags[victim] = line
            stamps[victim] = stamp
            lvl += 1
        out[i] = lvl


def simulate_hierarchy(addresses: np.ndarray, levels: Sequence[CacheLevel]) -> np.ndarray:
    """Level that served each access: int8 index into ``levels``, or ``len(levels)`` for memory.

    ``addresses`` are byte addresses (any integer dtype; int64 / uint64 are used as 64-bit
    patterns). The caches start empty. Loads only: stores and write-backs are not modelled (see the
    module docstring for the full model: fill on the way back into every level that missed,
    non-inclusive, no back-invalidation, true LRU per set).
    """
    levels = _check_levels(levels)
    addr = _as_int64_addresses(addresses)
    shifts = np.array([lv.line_bytes.bit_length() - 1 for lv in levels], dtype=np.int64)
    masks = np.array([(1 << (64 - int(s))) - 1 for s in shifts], dtype=np.uint64).view(np.int64)
    set_masks = np.array([lv.sets - 1 for lv in levels], dtype=np.int64)
    ways = np.array([lv.ways for lv in levels], dtype=np.int64)
    sizes = np.array([lv.sets * lv.ways for lv in levels], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    total = int(sizes.sum())
    tags = np.full(total, -1, dtype=np.int64)  # line numbers are < 2**63, so -1 never matches
    stamps = np.full(total, -1, dtype=np.int64)  # -1: invalid, chosen as victim first
    out = np.empty(addr.shape[0], dtype=np.int8)
    _simulate(addr, shifts, masks, set_masks, ways, offsets, tags, stamps, out)
    return out


def _llc_from_hit_levels(hit: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(hit >= n_levels - 1).astype(np.int64)
    return idx, hit[idx] == n_levels - 1


def model_cycles(
    hit_level: np.ndarray,
    levels: Sequence[CacheLevel],
    memory_latency: int,
    issue_cycles: int = 1,
) -> np.ndarray:
    """Modelled cycle count at which each access completes (uint64, non-decreasing).

    A simple in-order estimate, not a timing simulation: every access advances the clock by
    ``issue_cycles`` plus the latency of the level that served it (``memory_latency`` for
    memory), one access after the other, with no overlap, queuing or prefetching.
    """
    levels = _check_levels(levels)
    if memory_latency < 0 or issue_cycles < 0:
        raise ValueError("memory_latency and issue_cycles must be >= 0")
    hit = np.asarray(hit_level)
    if hit.size and (hit.min() < 0 or hit.max() > len(levels)):
        raise ValueError(f"hit levels must lie in 0..{len(levels)}")
    lat = np.array([lv.latency for lv in levels] + [memory_latency], dtype=np.uint64)
    step = lat[hit.astype(np.intp)] + np.uint64(issue_cycles)
    return np.cumsum(step, dtype=np.uint64)


def levels_from_config(cache_config: Mapping[str, Any]) -> list[CacheLevel]:
    """The hierarchy described by a config's validated `cache` section (sizes in KiB)."""
    line_bytes = cache_config["line_bytes"]
    return [
        CacheLevel(
            name=level["name"],
            size_bytes=level["size_kib"] * 1024,
            ways=level["ways"],
            line_bytes=line_bytes,
            latency=level["latency"],
        )
        for level in cache_config["levels"]
    ]


def llc_trace_from_loads(
    instr_id: np.ndarray,
    pc: np.ndarray,
    addr: np.ndarray,
    levels: Sequence[CacheLevel],
    memory_latency: int,
) -> pd.DataFrame:
    """LLC load trace of a program's loads (given in program order).

    Runs the cache hierarchy on all loads, models cycles over all loads with
    :func:`packd.cache.model_cycles` (a modelled estimate, not a timing simulation), and keeps the
    accesses that reach the last level, as the 5-column trace frame (``llc_hit`` true when the
    last level served the access).
    """
    instr_id = np.asarray(instr_id)
    pc = np.asarray(pc)
    addr = np.asarray(addr)
    if not (len(instr_id) == len(pc) == len(addr)):
        raise ValueError(
            f"instr_id, pc and addr differ in length: {len(instr_id)}, {len(pc)}, {len(addr)}"
        )
    levels = tuple(levels)
    hit = simulate_hierarchy(addr, levels)
    cycles = model_cycles(hit, levels, memory_latency)
    idx, llc_hit = _llc_from_hit_levels(hit, len(levels))
    return pd.DataFrame(
        {
            "instr_id": instr_id[idx].astype(np.uint64),
            "cycle": cycles[idx],
            "addr": addr[idx].astype(np.uint64),
            "pc": pc[idx].astype(np.uint64),
            "llc_hit": llc_hit,
        }
    )
