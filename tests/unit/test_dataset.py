import numpy as np
import pandas as pd
import pytest

from packd.dataset import (
    build_pieces_arrays,
    build_split_arrays,
    delta_bitmap_labels,
    load_split,
    save_split,
    segment_addresses,
    split_by_instr_id,
)


def test_segment_addresses_chunks_lowest_first_and_history_order():
    # block 0b000011_000010_000001 -> chunks 1, 2, 3 (lowest first)
    blocks = np.array([(3 << 12) | (2 << 6) | 1, 5, 63], dtype=np.int64)
    inputs = segment_addresses(blocks, history=2, chunks=3, chunk_bits=6)
    assert inputs.shape == (2, 2, 3)
    assert inputs.dtype == np.float32
    np.testing.assert_allclose(inputs[0, 0], np.array([1, 2, 3]) / 64)  # oldest first
    np.testing.assert_allclose(inputs[0, 1], np.array([5, 0, 0]) / 64)  # current last
    np.testing.assert_allclose(inputs[1, 1], np.array([63, 0, 0]) / 64)
    assert inputs.max() < 1.0


def test_segment_addresses_paper_shape_and_too_short():
    blocks = np.arange(25, dtype=np.int64) + (1 << 40)
    inputs = segment_addresses(blocks)
    assert inputs.shape == (16, 10, 10)
    assert segment_addresses(blocks[:5]).shape == (0, 10, 10)


def test_delta_bitmap_labels_hand_worked():
    blocks = np.array([100, 101, 100, 99, 100 + 4, 100 + 5, 100 - 4], dtype=np.int64)
    labels = delta_bitmap_labels(blocks, look_forward=128, delta_bound=4)
    assert labels.shape == (7, 8)
    # access 0 (100): future deltas +1, 0 (ignored), -1, +4, +5 (beyond), -4
    assert sorted(np.flatnonzero(labels[0])) == [0, 3, 4, 7]  # +1->0, +4->3, -4->4, -1->7
    # last access sees no future
    assert not labels[-1].any()


def test_delta_bitmap_labels_paper_bound_minus_one_is_bit_255():
    blocks = np.array([500, 499, 500 + 128, 500 - 128, 500 + 129, 500 - 129], dtype=np.int64)
    labels = delta_bitmap_labels(blocks, look_forward=128, delta_bound=128)
    assert sorted(np.flatnonzero(labels[0])) == [127, 128, 255]  # +128, -128, -1


def test_delta_bitmap_labels_look_forward_limits_window():
    blocks = np.array([0, 10, 20, 1], dtype=np.int64)
    labels = delta_bitmap_labels(blocks, look_forward=2, delta_bound=4)
    assert not labels[0].any()  # +1 is 3 steps ahead, beyond look_forward=2
    labels = delta_bitmap_labels(blocks, look_forward=3, delta_bound=4)
    assert labels[0, 0]


def _trace(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    blocks = 1000 + np.cumsum(rng.integers(-3, 4, size=n))
    return pd.DataFrame(
        {
            "instr_id": np.arange(n, dtype=np.uint64) * 10,
            "pc": rng.integers(0x400000, 0x400100, size=n).astype(np.uint64),
            "addr": (blocks.astype(np.uint64) << np.uint64(6)) + np.uint64(7),
        }
    )


def test_build_split_arrays_shapes_and_consistency():
    trace = _trace(300)
    arrays = build_split_arrays(trace, history=10, look_forward=16, delta_bound=128)
    n = arrays["inputs"].shape[0]
    assert 0 < n <= 291
    assert arrays["labels"].shape == (n, 256) and arrays["labels"].dtype == bool
    assert arrays["labels"].any(axis=1).all()
    assert arrays["block_addresses"].shape == (n, 10)
    assert arrays["pcs"].dtype == np.uint64 and arrays["pcs"].shape == (n, 10)
    assert arrays["deltas"].shape == (n, 9)
    np.testing.assert_array_equal(arrays["deltas"], np.diff(arrays["block_addresses"], axis=1))
    # the current (last) block of a sample matches its instr_id row in the trace
    rows = (arrays["instr_id"] // 10).astype(np.int64)
    np.testing.assert_array_equal(
        arrays["block_addresses"][:, -1], trace["addr"].to_numpy()[rows] >> 6
    )
    np.testing.assert_allclose(
        arrays["inputs"][:, -1, 0], (arrays["block_addresses"][:, -1] % 64) / 64
    )


def test_build_split_arrays_drops_samples_without_in_range_delta():
    blocks = np.array([0, 1, 2, 1000, 5000, 9000, 13000, 17000, 21000], dtype=np.int64)
    trace = pd.DataFrame(
        {"instr_id": np.arange(9), "pc": np.zeros(9, np.uint64), "block_address": blocks}
    )
    arrays = build_split_arrays(trace, history=2, look_forward=4, delta_bound=8)
    # samples at accesses 1..4 (5.. have no complete window): 1 (-> 2) kept; 2..4 only far deltas
    np.testing.assert_array_equal(arrays["instr_id"], [1])


def test_split_by_instr_id_fractions_contiguous_and_val_inside_train():
    trace = _trace(1001)  # instr_id 0..10000
    splits = split_by_instr_id(trace, warmup=0.1, train=0.7, val=0.2)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [1, 1, 1]  # one piece each
    train_ids, val_ids, test_ids = (
        splits[s][0]["instr_id"].to_numpy() for s in ("train", "val", "test")
    )
    assert train_ids.min() == 1000 and train_ids.max() < 6600
    assert val_ids.min() >= 6600 and val_ids.max() < 8000
    assert test_ids.min() == 8000 and test_ids.max() == 10000
    assert train_ids.max() < val_ids.min() and val_ids.max() < test_ids.min()
    total = len(train_ids) + len(val_ids) + len(test_ids)
    assert total == 1001 - 100  # only the warm-up is dropped


def test_split_by_instr_id_val_blocks_sample_the_whole_train_region():
    trace = _trace(1001)  # instr_id 0..10000; training region [1000, 8000)
    splits = split_by_instr_id(trace, warmup=0.1, train=0.7, val=0.2, val_blocks=4)
    assert len(splits["train"]) == len(splits["val"]) == 4 and len(splits["test"]) == 1
    # block b spans [1000 + 1750 b, 1000 + 1750 (b + 1)); its last 350 validate
    for block, (train_piece, val_piece) in enumerate(
        zip(splits["train"], splits["val"], strict=True)
    ):
        block_start = 1000 + 1750 * block
        train_ids, val_ids = train_piece["instr_id"], val_piece["instr_id"]
        assert train_ids.min() == block_start and train_ids.max() < block_start + 1400
        assert val_ids.min() >= block_start + 1400 and val_ids.max() < block_start + 1750
        assert (np.diff(train_ids) > 0).all() and (np.diff(val_ids) > 0).all()  # contiguous
    assert splits["test"][0]["instr_id"].min() == 8000
    every_id = np.concatenate([p["instr_id"] for pieces in splits.values() for p in pieces])
    assert len(every_id) == len(set(every_id)) == 1001 - 100  # disjoint; only warm-up dropped
    val_total = sum(len(p) for p in splits["val"])
    assert val_total == pytest.approx(0.2 * 700, abs=4)  # the same val fraction as one block


def test_build_pieces_arrays_windows_never_span_a_gap():
    trace = _trace(120)
    pieces = [trace.iloc[:50].reset_index(drop=True), trace.iloc[60:].reset_index(drop=True)]
    arrays = build_pieces_arrays(pieces, history=10, look_forward=16, delta_bound=128)
    first, second = (build_split_arrays(p, history=10, look_forward=16) for p in pieces)
    assert len(first["labels"]) > 0 and len(second["labels"]) > 0
    assert len(arrays["labels"]) == len(first["labels"]) + len(second["labels"])
    # the first sample of the second piece has its whole history inside that piece
    second_ids = arrays["instr_id"][len(first["labels"]) :]
    assert second_ids[0] == pieces[1]["instr_id"][9]
    np.testing.assert_array_equal(
        arrays["block_addresses"][len(first["labels"])], second["block_addresses"][0]
    )


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"warmup": -0.1, "train": 0.7, "val": 0.1}, "warmup"),
        ({"warmup": 0.1, "train": 0.0, "val": 0.1}, "train"),
        ({"warmup": 0.5, "train": 0.5, "val": 0.1}, "train"),
        ({"warmup": 0.1, "train": 0.7, "val": 1.0}, "val"),
        ({"warmup": 0.1, "train": 0.7, "val": 0.1, "val_blocks": 0}, "val_blocks"),
    ],
)
def test_split_by_instr_id_rejects_bad_fractions(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        split_by_instr_id(_trace(100), **kwargs)


def test_split_by_instr_id_empty_split_raises():
    trace = pd.DataFrame({"instr_id": [0, 1, 100], "pc": [0, 0, 0], "addr": [0, 64, 128]})
    with pytest.raises(ValueError, match="empty"):
        split_by_instr_id(trace, warmup=0.1, train=0.5, val=0.1)


def test_save_load_round_trip(tmp_path):
    arrays = build_split_arrays(_trace(200), history=10, look_forward=16, delta_bound=128)
    path = tmp_path / "sub" / "train.npz"
    save_split(path, arrays)
    loaded = load_split(path)
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded[key], value)
    assert [p.name for p in path.parent.iterdir()] == ["train.npz"]  # no temp file left


def test_build_split_arrays_keeps_only_complete_label_windows():
    """A sample whose look-forward window would cross the piece's end is dropped, not cut."""
    blocks = np.arange(100, dtype=np.int64) + 5000  # stride 1: a full window sets bits +1..+4
    trace = pd.DataFrame(
        {"instr_id": np.arange(100), "pc": np.zeros(100, np.uint64), "block_address": blocks}
    )
    arrays = build_split_arrays(trace, history=2, look_forward=4, delta_bound=8)
    np.testing.assert_array_equal(arrays["instr_id"], np.arange(1, 96))
    assert (arrays["labels"].sum(axis=1) == 4).all()
    assert arrays["labels"][:, :4].all()


def test_label_offset_starts_the_window_offset_accesses_ahead():
    """Labels of access i: deltas of accesses i+offset+1 .. i+offset+look_forward from access i."""
    blocks = np.array([100, 101, 102, 103, 104, 105, 106], dtype=np.int64)  # access j: 100 + j
    at_zero = delta_bitmap_labels(blocks, look_forward=2, delta_bound=8)
    assert sorted(np.flatnonzero(at_zero[0])) == [0, 1]  # +1, +2: accesses 1 and 2
    labels = delta_bitmap_labels(blocks, look_forward=2, delta_bound=8, label_offset=2)
    assert sorted(np.flatnonzero(labels[0])) == [2, 3]  # +3, +4: accesses 3 and 4
    assert sorted(np.flatnonzero(labels[2])) == [2, 3]  # from access 2: accesses 5 and 6
    assert sorted(np.flatnonzero(labels[3])) == [2]  # accesses 6 (+3) and none after the array
    assert not labels[4:].any()  # nothing left beyond the offset
    # Deltas are still taken from the current access, so offset 0 is the plain window.
    np.testing.assert_array_equal(
        delta_bitmap_labels(blocks, look_forward=2, delta_bound=8, label_offset=0), at_zero
    )
    with pytest.raises(ValueError, match="label_offset"):
        delta_bitmap_labels(blocks, label_offset=-1)


def test_build_split_arrays_with_label_offset_keeps_only_complete_offset_windows():
    blocks = np.arange(100, dtype=np.int64) + 5000  # stride 1
    trace = pd.DataFrame(
        {"instr_id": np.arange(100), "pc": np.zeros(100, np.uint64), "block_address": blocks}
    )
    arrays = build_split_arrays(trace, history=2, look_forward=4, delta_bound=8, label_offset=3)
    # Access i needs accesses up to i + 3 + 4 inside the piece: i <= 92.
    np.testing.assert_array_equal(arrays["instr_id"], np.arange(1, 93))
    assert (arrays["labels"].sum(axis=1) == 4).all()
    assert arrays["labels"][:, 3:7].all()  # deltas +4 .. +7 (bits 3 .. 6)
    assert not arrays["labels"][:, :3].any()  # +1 .. +3 would arrive too late
    pieces = build_pieces_arrays([trace], history=2, look_forward=4, delta_bound=8, label_offset=3)
    np.testing.assert_array_equal(pieces["labels"], arrays["labels"])
