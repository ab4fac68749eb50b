from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pytest

from packd.cache import (
    CHAMPSIM_DEFAULT,
    CHAMPSIM_MEMORY_LATENCY,
    CacheLevel,
    _check_levels,
    llc_trace_from_loads,
    model_cycles,
    simulate_hierarchy,
)

# L1: 2 sets x 2 ways, L2: 4 sets x 2 ways, 64-byte lines.
TINY = (
    CacheLevel("L1", 2 * 2 * 64, 2, latency=3),
    CacheLevel("L2", 4 * 2 * 64, 2, latency=7),
)

# Hand trace (line numbers; L1 set = line % 2, L2 set = line % 4; lists are LRU -> MRU):
#  1 line 0: L1 s0 []     miss, L2 s0 []     miss -> mem 2;  L1 s0 [0]    L2 s0 [0]
#  2 line 2: L1 s0 [0]    miss, L2 s2 []     miss -> 2;      L1 s0 [0,2]  L2 s2 [2]
#  3 line 4: L1 s0 [0,2]  miss, L2 s0 [0]    miss -> 2;      L1 s0 [2,4]  L2 s0 [0,4]
#  4 line 0: L1 s0 [2,4]  miss, L2 s0 [0,4]  hit  -> 1;      L1 s0 [4,0]  L2 s0 [4,0]
#  5 line 6: L1 s0 [4,0]  miss, L2 s2 [2]    miss -> 2;      L1 s0 [0,6]  L2 s2 [2,6]
#  6 line 2: L1 s0 [0,6]  miss, L2 s2 [2,6]  hit  -> 1;      L1 s0 [6,2]  L2 s2 [6,2]
#  7 line 8: L1 s0 [6,2]  miss, L2 s0 [4,0]  miss -> 2;      L1 s0 [2,8]  L2 s0 [0,8]
#  8 line 4: L1 s0 [2,8]  miss, L2 s0 [0,8]  miss -> 2;      L1 s0 [8,4]  L2 s0 [8,4]
#  9 line 1: L1 s1 []     miss, L2 s1 []     miss -> 2;      L1 s1 [1]    L2 s1 [1]
# 10 line 0: L1 s0 [8,4]  miss, L2 s0 [8,4]  miss -> 2;      L1 s0 [4,0]  L2 s0 [4,0]
# 11 line 4: L1 s0 [4,0]  hit -> 0;                          L1 s0 [0,4]
# 12 byte 127 (line 1): L1 s1 [1] hit -> 0
# 13 line 8: L1 s0 [0,4]  miss, L2 s0 [4,0]  miss -> 2;      L1 s0 [4,8]  L2 s0 [0,8]
# 14 line 4: L1 s0 [4,8]  hit -> 0 (not in L2 any more: non-inclusive); L1 s0 [8,4]
# 15 line 0: L1 s0 [8,4]  miss, L2 s0 [0,8]  hit  -> 1;      L1 s0 [4,0]  L2 s0 [8,0]
TINY_ADDRESSES = [0, 128, 256, 0, 384, 128, 512, 256, 64, 0, 256, 127, 512, 256, 0]
TINY_EXPECTED = [2, 2, 2, 1, 2, 1, 2, 2, 2, 2, 0, 0, 2, 0, 1]

SMALL3 = (
    CacheLevel("L1", 4 * 2 * 64, 2, latency=1),
    CacheLevel("L2", 8 * 4 * 64, 4, latency=2),
    CacheLevel("L3", 16 * 4 * 64, 4, latency=3),
)
MIXED_LINES = (
    CacheLevel("L1", 4 * 2 * 32, 2, 32, latency=1),
    CacheLevel("L2", 8 * 2 * 128, 2, 128, latency=2),
    CacheLevel("L3", 8 * 8 * 64, 8, 64, latency=3),
)


def test_hand_computed_tiny_case():
    hit = simulate_hierarchy(np.array(TINY_ADDRESSES, dtype=np.uint64), TINY)
    assert hit.dtype == np.int8
    assert hit.tolist() == TINY_EXPECTED
    assert reference_hierarchy(TINY_ADDRESSES, TINY).tolist() == TINY_EXPECTED


def _stream(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "random_small":
        return rng.integers(0, 200, n) * 64 + rng.integers(0, 64, n)
    if kind == "random_wide":
        pool = rng.integers(0, 1 << 40, 150)  # scattered over a wide range, reused
        return rng.choice(pool, n)
    if kind == "streaming":
        return np.arange(n, dtype=np.int64) * 8 + int(rng.integers(0, 1 << 20))
    if kind == "hot_cold":
        hot = rng.integers(0, 24, n) * 64
        cold = rng.integers(0, 5000, n) * 64
        return np.where(rng.random(n) < 0.7, hot, cold)
    if kind == "mixed":
        a = np.arange(n, dtype=np.int64) * 16
        r = rng.integers(0, 600, n) * 64
        return np.where(rng.random(n) < 0.5, a, r)
    raise AssertionError(kind)


@pytest.mark.parametrize("levels", [TINY, SMALL3, MIXED_LINES], ids=["tiny", "small3", "lines"])
@pytest.mark.parametrize("kind", ["random_small", "random_wide", "streaming", "hot_cold", "mixed"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_model(levels, kind, seed):
    rng = np.random.default_rng(seed)
    addresses = _stream(kind, rng, 3000).astype(np.int64)
    got = simulate_hierarchy(addresses, levels)
    want = reference_hierarchy(addresses, levels)
    np.testing.assert_array_equal(got, want)
    # the streams exercise more than one outcome
    assert len(np.unique(want)) >= 2


def test_champsim_default_matches_reference():
    rng = np.random.default_rng(7)
    n = 20_000
    addresses = np.where(
        rng.random(n) < 0.5,
        rng.integers(0, 60_000, n) * 64,  # footprint ~3.7 MiB: hits in every level
        np.arange(n) * 8,
    ).astype(np.uint64)
    got = simulate_hierarchy(addresses, CHAMPSIM_DEFAULT)
    np.testing.assert_array_equal(got, reference_hierarchy(addresses, CHAMPSIM_DEFAULT))
    assert set(np.unique(got).tolist()) == {0, 1, 2, 3}


def test_high_addresses_as_unsigned():
    # addresses with the top bit set (uint64) must map to distinct lines, as in the reference
    base = np.uint64(0xFFFF_FFFF_FFFF_0000)
    addresses = base + np.array([0, 64, 0, 128, 64, 0x8000], dtype=np.uint64)
    np.testing.assert_array_equal(
        simulate_hierarchy(addresses, TINY), reference_hierarchy(addresses, TINY)
    )


def test_champsim_geometry():
    l1, l2, llc = CHAMPSIM_DEFAULT
    assert (l1.sets, l2.sets, llc.sets) == (64, 1024, 2048)
    assert all(lv.line_bytes == 64 for lv in CHAMPSIM_DEFAULT)
    assert llc.latency < CHAMPSIM_MEMORY_LATENCY


def test_llc_trace_keeps_the_accesses_that_reach_the_last_level():
    rng = np.random.default_rng(3)
    addresses = _stream("mixed", rng, 5000)
    hit = simulate_hierarchy(addresses, SMALL3)
    order = np.arange(len(addresses))
    trace = llc_trace_from_loads(order, order, addresses, SMALL3, 100)
    idx, llc_hit = trace["instr_id"].to_numpy().astype(np.int64), trace["llc_hit"].to_numpy()
    assert llc_hit.dtype == bool
    np.testing.assert_array_equal(idx, np.flatnonzero(hit >= 2))
    np.testing.assert_array_equal(llc_hit, hit[idx] == 2)
    assert llc_hit.any() and not llc_hit.all()


def test_model_cycles_tiny_case():
    hit = np.array([0, 1, 2, 0], dtype=np.int8)
    # steps: 1+3, 1+7, 1+50, 1+3
    cyc = model_cycles(hit, TINY, memory_latency=50)
    assert cyc.dtype == np.uint64
    assert cyc.tolist() == [4, 12, 63, 67]
    assert model_cycles(hit, TINY, 50, issue_cycles=0).tolist() == [3, 10, 60, 63]


def test_model_cycles_monotone():
    rng = np.random.default_rng(0)
    hit = simulate_hierarchy(_stream("hot_cold", rng, 4000), SMALL3)
    cyc = model_cycles(hit, SMALL3, memory_latency=100)
    assert (np.diff(cyc.astype(np.int64)) > 0).all()
    with pytest.raises(ValueError):
        model_cycles(np.array([4], dtype=np.int8), SMALL3, 100)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"size_bytes": 3 * 64 * 2, "ways": 2}, "power of two"),  # 3 sets
        ({"size_bytes": 1000, "ways": 2}, "divisible"),
        ({"size_bytes": 512, "ways": 2, "line_bytes": 48}, "line_bytes"),
        ({"size_bytes": 512, "ways": 0}, "positive"),
        ({"size_bytes": 512, "ways": 2, "latency": -1}, "latency"),
    ],
)
def test_invalid_level_raises(kwargs, fragment):
    kwargs = {"latency": 1} | kwargs
    with pytest.raises(ValueError, match=fragment) as info:
        CacheLevel("Lbad", **kwargs)
    assert "Lbad" in str(info.value)


def test_empty_hierarchy_and_input():
    with pytest.raises(ValueError):
        simulate_hierarchy(np.array([0]), [])
    assert simulate_hierarchy(np.array([], dtype=np.uint64), TINY).shape == (0,)
    assert model_cycles(np.array([], dtype=np.int8), TINY, 10).shape == (0,)


def reference_hierarchy(addresses, levels: Sequence[CacheLevel]) -> np.ndarray:
    """Plain-Python model of :func:`simulate_hierarchy` (OrderedDict LRU per set)."""
    levels = _check_levels(levels)
    caches = [[OrderedDict() for _ in range(lv.sets)] for lv in levels]
    out = np.empty(len(addresses), dtype=np.int8)
    for i, a in enumerate(addresses):
        a = int(a) & ((1 << 64) - 1)
        served = len(levels)
        for k, lv in enumerate(levels):
            line = a // lv.line_bytes
            s = caches[k][line % lv.sets]
            if line in s:
                s.move_to_end(line)
                served = k
                break
        for k in range(served):  # fill every level that missed
            lv = levels[k]
            line = a // lv.line_bytes
            s = caches[k][line % lv.sets]
            if len(s) >= lv.ways:
                s.popitem(last=False)
            s[line] = True
        out[i] = served
    return out
