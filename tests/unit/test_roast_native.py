import logging

import pytest
import torch

from packd import roast_native


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """library() built afresh into an empty cache folder, and forgotten after the test."""
    monkeypatch.setenv("PACKD_CACHE_DIR", str(tmp_path))
    roast_native.library.cache_clear()
    yield tmp_path
    roast_native.library.cache_clear()


def test_the_library_is_built_once_into_the_cache(fresh_library, monkeypatch):
    assert roast_native.library() is not None
    built = list(fresh_library.glob("roast_tiles-*.so"))
    assert len(built) == 1 and not list(fresh_library.glob("tmp*"))  # no scratch folder left
    first_build = built[0].stat().st_mtime_ns

    def no_compiling(*args, **kwargs):
        raise AssertionError("the cached library should be reused")

    monkeypatch.setattr(roast_native.subprocess, "run", no_compiling)
    assert roast_native.build("cc", fresh_library) == built[0]
    assert built[0].stat().st_mtime_ns == first_build


def test_without_a_compiler_roast_falls_back_and_says_so(fresh_library, monkeypatch, caplog):
    monkeypatch.setenv("CC", "no-such-compiler")
    with caplog.at_level(logging.WARNING, logger="packd.roast_native"):
        assert roast_native.library() is None
    assert "no C compiler 'no-such-compiler'" in caplog.text
    assert not roast_native.usable(torch.zeros(4))


def test_a_failed_build_falls_back_with_the_compiler_message(fresh_library, monkeypatch, caplog):
    monkeypatch.setattr(roast_native, "SOURCE", "this is not C")
    with caplog.at_level(logging.WARNING, logger="packd.roast_native"):
        assert roast_native.library() is None
    assert "failed to build" in caplog.text and "error" in caplog.text


def test_the_switch_turns_the_kernels_off(fresh_library, monkeypatch):
    monkeypatch.setenv("PACKD_ROAST_NATIVE", "0")
    assert roast_native.library() is None
    assert not list(fresh_library.iterdir())  # nothing was built


def test_only_contiguous_float32_cpu_arrays_use_the_kernels():
    assert roast_native.usable(torch.zeros(8))
    assert not roast_native.usable(torch.zeros(8, dtype=torch.float64))
    assert not roast_native.usable(torch.zeros(8, 2)[:, 0])  # strided


def test_gather_and_scatter_on_a_hand_made_plan():
    array = torch.arange(10, dtype=torch.float32)
    tile = (2, 3)
    # A 3 x 4 matrix over a 2 x 2 grid of tiles; its last tile row and column are cropped
    offsets = torch.tensor([[0, 5], [2, 7]], dtype=torch.int64)
    part_plan = roast_native.plan([(offsets, 3, 4)])
    scales = torch.tensor([0.5])
    (matrix,) = roast_native.gather(array, tile, part_plan, scales, [(3, 4)])
    # row 0 reads slots 0,1,2 | 5; row 1 (second row of the tiles) 3,4,5 | 8; row 2: 2,3,4 | 7
    expected = 0.5 * torch.tensor([[0, 1, 2, 5], [3, 4, 5, 8], [2, 3, 4, 7]], dtype=torch.float32)
    assert torch.equal(matrix, expected)

    grad = torch.ones(3, 4)
    sums = roast_native.scatter_add(torch.zeros(10), tile, part_plan, scales, [grad])
    reads = torch.bincount(torch.tensor([0, 1, 2, 5, 3, 4, 5, 8, 2, 3, 4, 7]), minlength=10)
    assert torch.equal(sums, 0.5 * reads.float())
    # A part the loss did not reach (None) adds nothing
    untouched = roast_native.scatter_add(sums.clone(), tile, part_plan, scales, [None])
    assert torch.equal(untouched, sums)


def test_plan_rejects_offsets_it_cannot_address():
    with pytest.raises(ValueError, match="contiguous int64"):
        roast_native.plan([(torch.zeros(2, 2, dtype=torch.int32), 2, 2)])
