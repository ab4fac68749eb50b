import numpy as np
import pytest

from packd.cache import CacheLevel, llc_trace_from_loads, simulate_hierarchy
from packd.dataset import delta_bitmap_labels
from packd.prefetch import (
    BEST_OFFSET_OFFSETS,
    Prefetches,
    best_offset_prefetches,
    bit_deltas,
    evaluate_prefetches,
    filter_prefetches,
    ip_stride_prefetches,
    limit_per_load,
    llc_hit_flags,
    next_line_prefetches,
    prefetches_from_scores,
    ranked_candidates,
    read_prefetch_file,
    replay_llc,
    write_prefetch_file,
)

# 16 sets x 4 ways = 64 lines: every synthetic stream below touches far more lines than that.
LLC = CacheLevel("LLC", 16 * 4 * 64, 4, latency=20)
N_ACCESSES = 4000
STRIDE = 3


def _stream(lines):
    """instr_ids (5 apart, as loads among other instructions) for a list of block addresses."""
    lines = np.asarray(lines, dtype=np.int64)
    return np.arange(lines.size, dtype=np.uint64) * 5 + 100, lines


def _strided_stream():
    return _stream(np.arange(N_ACCESSES, dtype=np.int64) * STRIDE + 1000)


def test_bit_deltas_invert_the_dataset_labels():
    # Each future delta of a stream sets one label bit; bit_deltas must map it back.
    blocks = np.array([500, 505, 498, 627, 372], dtype=np.int64)
    labels = delta_bitmap_labels(blocks, look_forward=4, delta_bound=128)
    deltas = bit_deltas(labels.shape[1])
    for row in range(blocks.size):
        future_deltas = (int(b) - int(blocks[row]) for b in blocks[row + 1 :])
        expected = {d for d in future_deltas if d != 0 and -128 <= d <= 128}
        assert set(deltas[labels[row]].tolist()) == expected
    assert deltas[0] == 1 and deltas[127] == 128 and deltas[128] == -128 and deltas[255] == -1


def test_scores_to_prefetches_keeps_the_top_bits_above_threshold():
    scores = np.zeros((3, 256), dtype=np.float32)
    scores[0, [4, 9, 255, 100]] = [0.7, 0.9, 0.8, 0.6]  # +5, +10, -1, +101
    scores[1, 2] = 0.4  # below the threshold: nothing
    scores[2, [0, 1]] = 0.95  # a tie: the lower bit (+1) first
    instr_ids = np.array([10, 20, 30], dtype=np.uint64)
    blocks = np.array([1000, 2000, 3000], dtype=np.int64)
    prefetches = prefetches_from_scores(scores, instr_ids, blocks, threshold=0.5, degree=2)
    assert prefetches.instr_ids.tolist() == [10, 10, 30, 30]
    assert prefetches.addresses.tolist() == [1010 << 6, 999 << 6, 3001 << 6, 3002 << 6]


def test_scores_to_prefetches_drops_negative_blocks():
    scores = np.zeros((1, 256))
    scores[0, 255 - 4] = 1.0  # delta -5 from block 3
    prefetches = prefetches_from_scores(scores, [1], [3], threshold=0.5)
    assert len(prefetches) == 0


def test_ip_stride_covers_a_strided_stream():
    instr_ids, lines = _strided_stream()
    pcs = np.full(lines.size, 0x401000, dtype=np.uint64)
    prefetches = ip_stride_prefetches(instr_ids, lines, pcs, degree=2)
    report = evaluate_prefetches(instr_ids, lines, prefetches, LLC)
    assert report.baseline_misses == N_ACCESSES  # no reuse: every access misses without prefetch
    assert report.coverage > 0.9
    assert report.miss_reduction > 0.9
    assert report.accuracy > 0.99


def test_ip_stride_ignores_a_pc_without_a_stride():
    rng = np.random.default_rng(3)
    instr_ids, lines = _stream(rng.integers(0, 1 << 30, N_ACCESSES))
    pcs = np.full(lines.size, 0x401000, dtype=np.uint64)
    report = evaluate_prefetches(instr_ids, lines, ip_stride_prefetches(instr_ids, lines, pcs), LLC)
    assert report.issued < 0.01 * N_ACCESSES


def test_model_scores_with_the_stride_bit_highest_cover_a_strided_stream():
    instr_ids, lines = _strided_stream()
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.0, 0.3, size=(lines.size, 256)).astype(np.float32)
    scores[:, STRIDE - 1] = 0.9  # bit of delta +STRIDE
    prefetches = prefetches_from_scores(scores, instr_ids, lines, threshold=0.5, degree=2)
    assert len(prefetches) == lines.size  # one bit above the threshold per sample
    report = evaluate_prefetches(instr_ids, lines, prefetches, LLC)
    assert report.coverage > 0.9
    assert report.accuracy > 0.99


def test_next_line_covers_a_sequential_stream_but_not_a_random_one():
    instr_ids, sequential = _stream(np.arange(N_ACCESSES) + 5000)
    report = evaluate_prefetches(
        instr_ids, sequential, next_line_prefetches(instr_ids, sequential), LLC
    )
    assert report.coverage > 0.95

    rng = np.random.default_rng(1)
    instr_ids, random_lines = _stream(rng.integers(0, 1 << 30, N_ACCESSES))
    report = evaluate_prefetches(
        instr_ids, random_lines, next_line_prefetches(instr_ids, random_lines, degree=2), LLC
    )
    assert report.issued == 2 * N_ACCESSES
    assert report.coverage < 0.05
    assert report.extra_traffic > 1.9  # nearly every fill is wasted
    assert report.traffic_ratio == pytest.approx(
        (report.misses + report.filled) / report.baseline_misses
    )


def test_best_offset_learns_the_stride():
    instr_ids, lines = _strided_stream()
    prefetches = best_offset_prefetches(instr_ids, lines, degree=1)
    issued_lines = (prefetches.addresses >> np.uint64(6)).astype(np.int64)
    issuing = np.searchsorted(instr_ids, prefetches.instr_ids)
    assert np.array_equal(issued_lines - lines[issuing], np.full(len(prefetches), STRIDE))
    report = evaluate_prefetches(instr_ids, lines, prefetches, LLC)
    # Learning lasts until offset 3 reaches a score of 31, i.e. 31 rounds over the 52 offsets.
    learning = 31 * BEST_OFFSET_OFFSETS.size
    assert report.useful >= N_ACCESSES - learning - 5
    assert report.accuracy > 0.99


def test_best_offset_stays_off_on_a_random_stream():
    rng = np.random.default_rng(2)
    instr_ids, lines = _stream(rng.integers(0, 1 << 30, N_ACCESSES))
    assert len(best_offset_prefetches(instr_ids, lines)) == 0


def test_prefetch_file_round_trip(tmp_path):
    prefetches = Prefetches(
        np.array([3, 3, 7, 2**63 + 5], dtype=np.uint64),
        np.array([0x7F001240, 0x40, 0, 2**64 - 64], dtype=np.uint64),
    )
    path = tmp_path / "model.prefetches.txt"
    write_prefetch_file(path, prefetches)
    assert path.read_text().splitlines()[0] == "3 7f001240"
    back = read_prefetch_file(path, degree=2)
    assert np.array_equal(back.instr_ids, prefetches.instr_ids)
    assert np.array_equal(back.addresses, prefetches.addresses)
    assert back.addresses.dtype == np.uint64
    assert not list(tmp_path.glob(".*"))  # the atomic writer left no temporary file


def test_writer_rejects_unordered_prefetches(tmp_path):
    with pytest.raises(ValueError, match="non-decreasing"):
        write_prefetch_file(tmp_path / "p.txt", Prefetches([5, 4], [64, 128]))


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("12 40 7", "expected 2 fields"),
        ("12", "expected 2 fields"),
        ("", "expected 2 fields"),
        ("12 7g00", "not hexadecimal"),
        ("1x2 40", "not a decimal integer"),
        ("-3 40", "not a decimal integer"),
        ("2 40", "instr_id decreases"),
        ("5 1" + "0" * 16, "64 bits"),
    ],
)
def test_parser_names_the_malformed_line(tmp_path, bad_line, reason):
    path = tmp_path / "p.txt"
    path.write_text(f"3 7f001240\n5 0x80\n{bad_line}\n9 c0\n")
    with pytest.raises(ValueError, match=reason) as error:
        read_prefetch_file(path)
    assert f"{path}, line 3" in str(error.value)


def test_parser_enforces_the_degree(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("3 40\n3 80\n3 c0\n")
    assert len(read_prefetch_file(path)) == 3
    with pytest.raises(ValueError, match="line 3: more than 2 prefetches"):
        read_prefetch_file(path, degree=2)


def test_baseline_replay_reproduces_the_trace_llc_flags():
    # A program's loads through a 3-level hierarchy; the LLC stream alone must give llc_hit.
    rng = np.random.default_rng(4)
    hot = rng.integers(0, 96, 20_000)  # reuse, so the LLC both hits and misses
    cold = rng.integers(0, 4096, 20_000)
    lines = np.where(rng.random(20_000) < 0.7, hot, cold)
    addresses = lines * 64 + rng.integers(0, 64, lines.size)
    levels = (
        CacheLevel("L1", 2 * 2 * 64, 2, latency=1),
        CacheLevel("L2", 4 * 4 * 64, 4, latency=5),
        LLC,
    )
    trace = llc_trace_from_loads(
        np.arange(lines.size), np.zeros(lines.size), addresses, levels, memory_latency=100
    )
    llc_hit = trace["llc_hit"].to_numpy()
    assert 0.1 < llc_hit.mean() < 0.9
    stream_lines = (trace["addr"].to_numpy() >> np.uint64(6)).astype(np.int64)
    assert np.array_equal(llc_hit_flags(stream_lines, LLC), llc_hit)

    # The same with the LLC as the only level, on every access.
    only_llc = simulate_hierarchy(addresses, (LLC,)) == 0
    assert np.array_equal(llc_hit_flags(lines, LLC), only_llc)
    _, counts = replay_llc(*_stream(lines), Prefetches.empty(), LLC)
    assert counts.misses == np.count_nonzero(~only_llc)


def test_prefetch_distance_makes_a_late_prefetch_useless():
    # Lines 10, 11, 20, 30, 11: the load of line 10 prefetches 11 (needed 1 access later) and 20
    # (needed 2 accesses later). Sets of 16: all five lines differ in set or fit in 4 ways.
    instr_ids, lines = _stream([10, 11, 20, 30, 11])
    prefetches = Prefetches([instr_ids[0], instr_ids[0]], [11 << 6, 20 << 6])

    on_time = evaluate_prefetches(instr_ids, lines, prefetches, LLC, distance=1)
    assert (on_time.baseline_misses, on_time.misses) == (4, 2)
    assert (on_time.useful, on_time.filled, on_time.redundant) == (2, 2, 0)

    late = evaluate_prefetches(instr_ids, lines, prefetches, LLC, distance=2)
    # 11 is demanded, and missed, while its prefetch is in flight (late: the demand fetches it),
    # 20 arrives in time; the second access to 11 hits a demand-fetched line, no prefetch's credit.
    assert late.misses == 3
    assert (late.useful, late.filled, late.redundant, late.late) == (1, 1, 0, 1)
    assert late.accuracy == 1.0  # useful / filled: the late prefetch fetched nothing
    hits, _ = replay_llc(instr_ids, lines, prefetches, LLC, distance=2)
    assert hits.tolist() == [False, False, True, False, True]

    too_late = evaluate_prefetches(instr_ids, lines, prefetches, LLC, distance=9)
    # 11 and 20 are both demanded while their prefetches are in flight: both late.
    assert (too_late.useful, too_late.filled, too_late.redundant, too_late.late) == (0, 0, 0, 2)
    assert too_late.issued == 2 and too_late.accuracy == 0.0


def test_useful_counts_once_per_fill_and_fills_are_not_demand_accesses():
    instr_ids, lines = _stream([10, 50, 50, 50])
    prefetches = Prefetches([instr_ids[0]], [50 << 6])
    report = evaluate_prefetches(instr_ids, lines, prefetches, LLC)
    assert (report.baseline_misses, report.misses, report.useful) == (2, 1, 1)
    assert report.accuracy == 1.0 and report.coverage == 0.5


def test_prefetch_evicts_by_lru_and_unused_fills_count_as_extra_traffic():
    # One set (stride 16 lines = one set apart), 4 ways: a prefetch evicts the LRU line.
    instr_ids, lines = _stream([0, 16, 32, 48, 0])
    prefetches = Prefetches([instr_ids[3]], [64 << 6])  # fills after access 3, evicts line 0
    report = evaluate_prefetches(instr_ids, lines, prefetches, LLC)
    assert (report.baseline_misses, report.misses) == (4, 5)
    assert report.useful == 0 and report.extra_traffic == 0.25
    assert report.miss_reduction == -0.25


def test_each_prefetch_is_counted_once_as_filled_redundant_late_or_in_flight():
    """The definitions on a hand-made stream (distance 2: a prefetch issued by access t is in
    flight during access t + 1 and fills just before access t + 2). 16 sets: no two lines below
    share a set beyond 4 ways, so nothing is evicted."""
    instr_ids, lines = _stream([100, 101, 102, 200, 103, 300, 104])
    issued = [
        (0, 103),  # fills before access 2, demanded at access 4: filled and useful
        (0, 100),  # access 0's own line, cached at fill time: redundant
        (1, 102),  # in flight when access 2 misses on 102: late, and never fills
        (1, 102),  # the same line again: the miss makes only one prefetch late; this is redundant
        (2, 500),  # fills before access 4, never demanded: filled and unused
        (5, 999),  # due before access 7, after the stream's end: in flight
    ]
    prefetches = Prefetches(
        [instr_ids[access] for access, _ in issued], [line << 6 for _, line in issued]
    )
    report = evaluate_prefetches(instr_ids, lines, prefetches, LLC, distance=2)
    assert (report.issued, report.filled, report.redundant, report.late) == (6, 2, 2, 1)
    assert report.useful == 1
    assert (report.baseline_misses, report.misses) == (7, 6)  # only 103 turns into a hit
    # The competition's accuracy: useful per prefetch filled, not per prefetch issued (1/6).
    assert report.accuracy == 1 / 2
    assert report.coverage == 1 / 7
    assert report.miss_reduction == 1 / 7
    assert report.extra_traffic == 1 / 7  # the unused fill of 500
    assert report.traffic_ratio == (6 + 2) / 7
    hits, counts = replay_llc(instr_ids, lines, prefetches, LLC, distance=2)
    assert hits.tolist() == [False, False, False, False, True, False, False]
    assert counts.late == 1 and counts.issued == 6
    as_dict = report.as_dict()
    for key in ("issued", "filled", "redundant", "late", "useful", "accuracy", "coverage"):
        assert as_dict[key] == getattr(report, key)


def test_ranked_candidates_are_every_bit_above_threshold_best_first():
    scores = np.zeros((3, 256), dtype=np.float32)
    scores[0, [4, 9, 255, 100]] = [0.7, 0.9, 0.8, 0.6]  # +5, +10, -1, +101
    scores[1, 2] = 0.4  # below the threshold: nothing
    scores[2, [0, 1, 254]] = [0.95, 0.95, 0.6]  # a tie: the lower bit (+1) first; -2 drops (< 0)
    instr_ids = np.array([10, 20, 30], dtype=np.uint64)
    blocks = np.array([1000, 2000, 1], dtype=np.int64)
    candidates = ranked_candidates(scores, instr_ids, blocks, threshold=0.5)
    assert candidates.instr_ids.tolist() == [10, 10, 10, 10, 30, 30]
    assert (candidates.addresses >> np.uint64(6)).tolist() == [1010, 999, 1005, 1101, 2, 3]
    # The first `degree` of each sample are the raw top-k prefetches (no block below 0 here).
    kept = limit_per_load(candidates, degree=2)
    raw = prefetches_from_scores(scores[:2], instr_ids[:2], blocks[:2], threshold=0.5, degree=2)
    assert kept.addresses[:2].tolist() == raw.addresses.tolist()


def test_filter_skips_recent_lines_and_fills_the_degree_from_the_next_ranked():
    """window 3: a line demanded or issued by this access or the 2 before it is skipped."""
    instr_ids, lines = _stream([10, 11, 20, 21, 22, 23])
    ranked = {
        0: [11, 12, 13],  # 11 and 12 fill the degree; 13 is not needed
        1: [12, 11, 13, 14],  # 12 issued at access 0, 11 demanded now: skipped; 13, 14 fill in
        2: [10, 15],  # 10 demanded at access 0 (2 accesses ago): skipped
        3: [11, 12],  # 11 demanded at access 1: skipped; 12 issued at 0, 3 accesses ago: issued
        5: [14, 14, 16],  # 14 issued at 1 (4 ago): issued, its repeat skipped, then 16
    }
    candidates = Prefetches(
        [instr_ids[access] for access, ranked_lines in ranked.items() for _ in ranked_lines],
        [line << 6 for ranked_lines in ranked.values() for line in ranked_lines],
    )
    kept = filter_prefetches(instr_ids, lines, candidates, degree=2, window=3)
    issuing = np.searchsorted(instr_ids, kept.instr_ids).tolist()
    pairs = list(zip(issuing, (kept.addresses >> np.uint64(6)).tolist(), strict=True))
    assert pairs == [(0, 11), (0, 12), (1, 13), (1, 14), (2, 15), (3, 12), (5, 14), (5, 16)]
    # A skipped candidate does not count as prefetched: 12, skipped at access 1, is issued again
    # at access 3 because its last issue (access 0) left the window. With window 1 only a load's
    # own line and its own repeats are skipped.
    kept = filter_prefetches(instr_ids, lines, candidates, degree=2, window=1)
    issuing = np.searchsorted(instr_ids, kept.instr_ids).tolist()
    pairs = list(zip(issuing, (kept.addresses >> np.uint64(6)).tolist(), strict=True))
    expected = [(0, 11), (0, 12), (1, 12), (1, 13), (2, 10), (2, 15), (3, 11), (3, 12), (5, 14)]
    assert pairs == [*expected, (5, 16)]


def test_filter_rejects_bad_arguments():
    instr_ids, lines = _stream([1, 2, 3])
    with pytest.raises(ValueError, match="window"):
        filter_prefetches(instr_ids, lines, Prefetches.empty(), window=0)
    with pytest.raises(ValueError, match="non-decreasing"):
        filter_prefetches(instr_ids, lines, Prefetches([instr_ids[1], instr_ids[0]], [64, 128]))


def test_filtered_next_line_drops_its_repeats_and_keeps_its_useful_prefetches():
    # On a sequential stream next-line (degree 2) asks for X + 2 again at X + 1: the filter
    # drops that repeat, so every prefetch left is filled and none is redundant.
    instr_ids, sequential = _stream(np.arange(N_ACCESSES) + 5000)
    raw = next_line_prefetches(instr_ids, sequential, degree=2)
    filtered = filter_prefetches(instr_ids, sequential, raw, degree=2, window=8)
    raw_report = evaluate_prefetches(instr_ids, sequential, raw, LLC, distance=1)
    report = evaluate_prefetches(instr_ids, sequential, filtered, LLC, distance=1)
    assert raw_report.redundant > 0.45 * N_ACCESSES
    assert report.redundant == 0 and report.late == 0
    assert len(filtered) == N_ACCESSES + 1  # X + 1 and X + 2 first, then one new line a load
    assert report.useful == raw_report.useful
    assert report.accuracy == pytest.approx(raw_report.accuracy)
