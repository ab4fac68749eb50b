import lzma
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from packd import trace_io
from packd.cache import CacheLevel, llc_trace_from_loads, model_cycles, simulate_hierarchy
from packd.trace_io import (
    TRACE_COLUMNS,
    TRACE_SCHEMA,
    TraceFileNotFoundError,
    TraceFormatError,
    parse_load_trace,
    read_trace_parquet,
    summarize_trace,
    write_trace_parquet,
)

GOOD = (
    "*** ChampSim Multicore Out-of-Order Simulator ***\n"
    "Read 1000 instructions\n"
    "\n"
    "3, 2, 7ffd5cdfb2b8, 401c97, 0\n"
    "  7 ,9,0x7FFD5CDFB2C0 ,  0X401C9b , 1 \r\n"
    "*** Warmup complete\n"
    "12,40,10,ff,1\n"
    "   \n"
)
GOOD_ROWS = [
    (3, 2, 0x7FFD5CDFB2B8, 0x401C97, False),
    (7, 9, 0x7FFD5CDFB2C0, 0x401C9B, True),
    (12, 40, 0x10, 0xFF, True),
]


def _check_good(df: pd.DataFrame) -> None:
    assert tuple(df.columns) == TRACE_COLUMNS
    assert [str(t) for t in df.dtypes] == ["uint64"] * 4 + ["bool"]
    assert list(df.itertuples(index=False, name=None)) == GOOD_ROWS


def test_parse_txt(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(GOOD)
    _check_good(parse_load_trace(p))


def test_parse_txt_xz(tmp_path):
    p = tmp_path / "t.txt.xz"
    p.write_bytes(lzma.compress(GOOD.encode()))
    _check_good(parse_load_trace(p))


def test_parse_no_trailing_newline(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("1, 2, 3, 4, 0")
    assert parse_load_trace(p)["pc"].tolist() == [4]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("5, 6, 7ff0, 40", "expected 5 comma-separated fields, got 4"),
        ("5, 6, 7ff0, 40, 0, 9", "expected 5 comma-separated fields"),
        ("5, 6, 7fg0, 40, 0", "field 3 (load_addr) is not a hex number"),
        ("5, 6, 7ff0, 0x, 0", "field 4 (load_pc) is not a hex number"),
        ("5, x6, 7ff0, 40, 0", "field 2 (cycle) is not a decimal number"),
        ("5, 6, 7ff0, 40, 2", "llc_hit must be 0 or 1"),
        ("5, -6, 7ff0, 40, 0", "negative"),
        ("5, 6, 1234567890abcdef0, 40, 0", "does not fit in 64 bits"),
        ("5.5, 6, 7ff0, 40, 0", "field 1 (instr_id)"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, fragment):
    p = tmp_path / "bad.txt"
    p.write_text("*** chatter\n1, 2, 3, 4, 0\n\n" + bad + "\n7, 8, 9, a, 1\n")
    with pytest.raises(TraceFormatError) as info:
        parse_load_trace(p)
    msg = str(info.value)
    assert f"{p}:4:" in msg
    assert fragment in msg
    assert bad in msg


def test_malformed_line_text_is_truncated(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("1, 2, 3, 4, 0\n1, 2, 3, 4, " + "z" * 500 + "\n")
    with pytest.raises(TraceFormatError, match=r"bad.txt:2:") as info:
        parse_load_trace(p)
    assert "z" * 60 in str(info.value) and "z" * 100 not in str(info.value)


def test_truncated_xz(tmp_path):
    data = lzma.compress(("".join(f"{i}, {i}, {i:x}, 40, 0\n" for i in range(5000))).encode())
    p = tmp_path / "cut.txt.xz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError, match="truncated or corrupt xz") as info:
        parse_load_trace(p)
    assert str(p) in str(info.value)


def test_corrupt_xz(tmp_path):
    p = tmp_path / "junk.txt.xz"
    p.write_bytes(b"this is not xz at all")
    with pytest.raises(TraceFormatError, match="truncated or corrupt xz"):
        parse_load_trace(p)


def test_empty_trace(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("*** ChampSim\nRead 0 instructions\n\n")
    with pytest.raises(TraceFormatError, match="empty trace") as info:
        parse_load_trace(p)
    assert str(p) in str(info.value)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.txt.xz"
    with pytest.raises(TraceFileNotFoundError) as info:
        parse_load_trace(p)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, TraceFormatError)
    assert str(p) in str(info.value)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instr_id": np.array([30, 10, 20, 10], dtype=np.int64),
            "cycle": [300, 100, 200, 101],
            "addr": np.array([0x1000, 0x2040, 0x2000, 0xFFFF_FFFF_FFFF_FFC0], dtype=np.uint64),
            "pc": [7, 8, 9, 10],
            "llc_hit": [1, 0, 1, 0],
        }
    )


def test_parquet_round_trip(tmp_path):
    p = tmp_path / "t.parquet"
    meta = {
        "source": "gap/bfs",
        "seed": 42,
        "cache": {"L1D": [48, 12], "LLC": [2048, 16]},
        "cycle_kind": "modelled",
        "ratio": 0.5,
        "numeric_string": "123",
    }
    write_trace_parquet(_frame(), p, meta)
    df, got = read_trace_parquet(p)
    assert got == meta
    assert isinstance(got["numeric_string"], str) and isinstance(got["seed"], int)
    assert tuple(df.columns) == TRACE_COLUMNS
    assert [str(t) for t in df.dtypes] == ["uint64"] * 4 + ["bool"]
    # stable sort by instr_id: the two instr_id-10 rows keep their order
    assert df["instr_id"].tolist() == [10, 10, 20, 30]
    assert df["cycle"].tolist() == [100, 101, 200, 300]
    assert df["addr"].tolist() == [0x2040, 0xFFFF_FFFF_FFFF_FFC0, 0x2000, 0x1000]
    assert df["llc_hit"].tolist() == [False, False, True, True]
    assert pq.read_schema(p).remove_metadata().equals(TRACE_SCHEMA)
    assert os.listdir(tmp_path) == ["t.parquet"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f.assign(addr=["a", "b", "c", "d"]),
        lambda f: f.assign(cycle=[1, -2, 3, 4]),
        lambda f: f.assign(llc_hit=[0, 1, 2, 0]),
        lambda f: f.drop(columns="pc"),
        lambda f: f.iloc[:0],
    ],
)
def test_invalid_frame_writes_nothing(tmp_path, mutate):
    p = tmp_path / "t.parquet"
    with pytest.raises(ValueError):
        write_trace_parquet(mutate(_frame()), p, {"source": "x"})
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    p = tmp_path / "t.parquet"
    write_trace_parquet(_frame(), p, {"source": "old"})
    before = p.read_bytes()

    def broken_write(table, where, **kwargs):
        where.write(b"PAR1 partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(trace_io.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_trace_parquet(_frame(), p, {"source": "new"})
    assert os.listdir(tmp_path) == ["t.parquet"]
    assert p.read_bytes() == before


def test_unencodable_metadata_raises(tmp_path):
    with pytest.raises(ValueError, match="bad"):
        write_trace_parquet(_frame(), tmp_path / "t.parquet", {"bad": object()})
    assert os.listdir(tmp_path) == []


def test_summarize_trace():
    df = pd.DataFrame(
        {
            "instr_id": np.array([5, 9, 12, 20, 25], dtype=np.uint64),
            "cycle": np.array([1, 2, 3, 4, 5], dtype=np.uint64),
            # lines: 0x1000>>6=64, 0x1008 same line, 0x1040 -> 65, 0x2000 -> 128, 0x2000 again
            # pages: 1, 1, 1, 2, 2
            "addr": np.array([0x1000, 0x1008, 0x1040, 0x2000, 0x2000], dtype=np.uint64),
            "pc": np.array([1, 1, 2, 3, 1], dtype=np.uint64),
            "llc_hit": [True, False, False, True, False],
        }
    )
    s = summarize_trace(df)
    assert s["accesses"] == 5
    assert s["llc_misses"] == 3
    assert s["llc_miss_rate"] == pytest.approx(0.6)
    assert s["distinct_pcs"] == 3
    assert s["distinct_pages"] == 2
    assert s["distinct_lines"] == 3
    assert (s["instr_id_min"], s["instr_id_max"], s["instr_id_span"]) == (5, 25, 20)


def test_llc_trace_from_loads():
    levels = (
        CacheLevel("L1", 2 * 2 * 64, 2, latency=3),
        CacheLevel("L2", 4 * 2 * 64, 2, latency=7),
    )
    rng = np.random.default_rng(0)
    n = 2000
    addr = (rng.integers(0, 40, n) * 64).astype(np.uint64)
    pc = rng.integers(0x400000, 0x400100, n).astype(np.uint64)
    instr = np.arange(n, dtype=np.uint64) * 3 + 1
    df = llc_trace_from_loads(instr, pc, addr, levels, memory_latency=100)
    hit = simulate_hierarchy(addr, levels)
    keep = hit >= 1
    cycles = model_cycles(hit, levels, 100)
    assert tuple(df.columns) == TRACE_COLUMNS
    assert [str(t) for t in df.dtypes] == ["uint64"] * 4 + ["bool"]
    np.testing.assert_array_equal(df["instr_id"], instr[keep])
    np.testing.assert_array_equal(df["addr"], addr[keep])
    np.testing.assert_array_equal(df["pc"], pc[keep])
    np.testing.assert_array_equal(df["cycle"], cycles[keep])
    np.testing.assert_array_equal(df["llc_hit"], hit[keep] == 1)
    assert 0 < len(df) < n
    with pytest.raises(ValueError, match="length"):
        llc_trace_from_loads(instr[:-1], pc, addr, levels, 100)
