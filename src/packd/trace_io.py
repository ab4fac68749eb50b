"""ML-DPC load traces: schema, parsing of the competition's text traces, Parquet I/O, LLC filter.

A load trace has one row per access that reaches the LLC, in program order::

    instr_id  cycle  addr  pc  llc_hit
    uint64    uint64 uint64 uint64 bool
"""

from __future__ import annotations

import errno
import json
import lzma
import os
from collections.abc import Mapping
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from packd.atomic import atomic_path

__all__ = [
    "TRACE_COLUMNS",
    "TRACE_SCHEMA",
    "TraceFileNotFoundError",
    "TraceFormatError",
    "parse_load_trace",
    "read_trace_parquet",
    "summarize_trace",
    "write_trace_parquet",
]

TRACE_COLUMNS = ("instr_id", "cycle", "addr", "pc", "llc_hit")
TRACE_SCHEMA = pa.schema(
    [
        pa.field("instr_id", pa.uint64(), nullable=False),
        pa.field("cycle", pa.uint64(), nullable=False),
        pa.field("addr", pa.uint64(), nullable=False),
        pa.field("pc", pa.uint64(), nullable=False),
        pa.field("llc_hit", pa.bool_(), nullable=False),
    ]
)
_INT_COLUMNS = TRACE_COLUMNS[:4]
# Metadata key listing the keys whose values were JSON-encoded (so that str values round-trip).
_JSON_KEYS = "packd.json_keys"


class TraceFormatError(ValueError):
    """A trace file or frame is malformed. The message names the file and, for a bad line, its
    1-based line number and text (truncated to 80 characters)."""


class TraceFileNotFoundError(FileNotFoundError, TraceFormatError):
    """The trace file does not exist: both a FileNotFoundError and a TraceFormatError."""


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

# _parse_buffer's error codes (0: the whole buffer parsed).
_ERR_FIELDS = 1
_ERR_NUMBER = 2
_ERR_LLC = 3
_ERR_NEGATIVE = 4
_ERR_OVERFLOW = 5
_FIELD_NAMES = ("instr_id", "cycle", "load_addr", "load_pc", "llc_hit")
_HEX_FIELDS = (False, False, True, True, False)


@numba.njit(cache=True, nogil=True)
def _parse_buffer(buf, out):  # pragma: no cover - compiled
    """Parse ``buf`` (uint8) into ``out`` (5 x n uint64). Returns (rows, err, line_no, field)."""
    n = buf.shape[0]
    pos = 0
    line_no = 0
    rows = 0
    while pos < n:
        line_no += 1
        end = pos
        while end < n and buf[end] != 10:  # '\n'
            end += 1
        next_pos = end + 1
        # strip whitespace (space, tab, CR) at both ends
        s = pos
        e = end
        while s < e and (buf[s] == 32 or buf[s] == 9 or buf[s] == 13):
            s += 1
        while e > s and (buf[e - 1] == 32 or buf[e - 1] == 9 or buf[e - 1] == 13):
            e -= 1
        if s == e:
            pos = next_pos
            continue
        # simulator chatter: lines starting with '***' or 'Read'
        if e - s >= 3 and buf[s] == 42 and buf[s + 1] == 42 and buf[s + 2] == 42:
            pos = next_pos
            continue
        if (
            e - s >= 4
            and buf[s] == 82
            and buf[s + 1] == 101
            and buf[s + 2] == 97
            and buf[s + 3] == 100
        ):
            pos = next_pos
            continue
        field = 0
        p = s
        while True:
            if field >= 5:
                return rows, _ERR_FIELDS, line_no, field  # too many fields
            # one field: [ws] [0x] digits [ws] (',' | end)
            while p < e and (buf[p] == 32 or buf[p] == 9):
                p += 1
            is_hex = field == 2 or field == 3
            if p < e and buf[p] == 45:  # '-'
                return rows, _ERR_NEGATIVE, line_no, field
            if (
                is_hex
                and p + 1 < e
                and buf[p] == 48
                and (buf[p + 1] == 120 or buf[p + 1] == 88)  # 0x / 0X
            ):
                p += 2
            value = np.uint64(0)
            seen = 0  # digit characters consumed
            sig = 0  # significant digits (after leading zeros)
            while p < e:
                c = buf[p]
                if 48 <= c <= 57:
                    d = c - 48
                elif is_hex and 97 <= c <= 102:
                    d = c - 87
                elif is_hex and 65 <= c <= 70:
                    d = c - 55
                else:
                    break
                seen += 1
                if sig > 0 or d != 0:
                    sig += 1
                if is_hex:
                    if sig > 16:
                        return rows, _ERR_OVERFLOW, line_no, field
                    value = value * np.uint64(16) + np.uint64(d)
                else:
                    if sig > 19:  # 10**19 - 1 fits in uint64; 20 digits may not
                        return rows, _ERR_OVERFLOW, line_no, field
                    value = value * np.uint64(10) + np.uint64(d)
                p += 1
            if seen == 0:
                return rows, _ERR_NUMBER, line_no, field
            while p < e and (buf[p] == 32 or buf[p] == 9):
                p += 1
            out[field, rows] = value
            field += 1
            if p == e:
                break
            if buf[p] != 44:  # ','
                return rows, _ERR_NUMBER, line_no, field - 1
            p += 1
        if field != 5:
            return rows, _ERR_FIELDS, line_no, field
        if out[4, rows] > 1:
            return rows, _ERR_LLC, line_no, 4
        rows += 1
        pos = next_pos
    return rows, 0, line_no, 0


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise TraceFileNotFoundError(errno.ENOENT, "load trace not found", str(path))
    if path.name.endswith(".xz"):
        try:
            with lzma.open(path, "rb") as fh:
                return fh.read()
        except (lzma.LZMAError, EOFError) as exc:
            raise TraceFormatError(f"{path}: truncated or corrupt xz ({exc})") from exc
    return path.read_bytes()


def _line_text(data: bytes, line_no: int) -> str:
    start = 0
    for _ in range(line_no - 1):
        start = data.index(b"\n", start) + 1
    end = data.find(b"\n", start)
    text = data[start : end if end >= 0 else len(data)].decode("utf-8", errors="replace")
    text = text.rstrip("\r")
    return text if len(text) <= 80 else text[:77] + "..."


def parse_load_trace(path: Path) -> pd.DataFrame:
    """Read an ML-DPC load trace (``.txt`` or ``.txt.xz``) into the 5-column trace frame.

    Each access line is ``instr_id, cycle, load_addr, load_pc, llc_hit``: decimal, decimal, hex,
    hex (with or without ``0x``), 0/1, separated by commas with any spaces/tabs around them. Blank
    lines and simulator chatter (lines starting with ``***`` or ``Read``) are skipped.

    Raises :class:`TraceFileNotFoundError` (a FileNotFoundError *and* a TraceFormatError) for a
    missing file, and :class:`TraceFormatError` naming the file for a malformed line (with its
    1-based number and text), a truncated or corrupt xz stream, or a trace with no accesses.
    Rows keep the file's order.
    """
    path = Path(path)
    data = _read_bytes(path)
    buf = np.frombuffer(data, dtype=np.uint8)
    out = np.empty((5, data.count(b"\n") + 1), dtype=np.uint64)
    rows, err, line_no, field = _parse_buffer(buf, out)
    if err:
        text = _line_text(data, line_no)
        where = f"{path}:{line_no}: "
        name = _FIELD_NAMES[field] if field < 5 else "?"
        if err == _ERR_FIELDS:
            msg = f"expected 5 comma-separated fields, got {'more' if field >= 5 else field}"
        elif err == _ERR_NUMBER:
            kind = "hex number" if _HEX_FIELDS[field] else "decimal number"
            msg = f"field {field + 1} ({name}) is not a {kind}"
        elif err == _ERR_LLC:
            msg = "llc_hit must be 0 or 1"
        elif err == _ERR_NEGATIVE:
            msg = f"field {field + 1} ({name}) is negative"
        else:  # _ERR_OVERFLOW
            msg = f"field {field + 1} ({name}) does not fit in 64 bits"
        raise TraceFormatError(f"{where}{msg}: {text!r}")
    if rows == 0:
        raise TraceFormatError(f"{path}: empty trace (no accesses)")
    out = out[:, :rows]
    return pd.DataFrame(
        {
            "instr_id": out[0].copy(),
            "cycle": out[1].copy(),
            "addr": out[2].copy(),
            "pc": out[3].copy(),
            "llc_hit": out[4].astype(bool),
        }
    )


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------


def _as_uint64(series: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype):
        raise TraceFormatError(f"column {name!r} must hold integers, got booleans")
    if series.isna().any():
        raise TraceFormatError(f"column {name!r} has missing values")
    if pd.api.types.is_integer_dtype(series.dtype):
        values = series.to_numpy()
        if np.issubdtype(values.dtype, np.signedinteger) and values.size and values.min() < 0:
            raise TraceFormatError(f"column {name!r} has negative values")
        return values.astype(np.uint64)
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64)
        if values.size and (
            (values < 0).any() or (values != np.floor(values)).any() or (values >= 2.0**64).any()
        ):
            raise TraceFormatError(f"column {name!r} has non-integral or negative values")
        return values.astype(np.uint64)
    raise TraceFormatError(f"column {name!r} has dtype {series.dtype}, not castable to uint64")


def _as_bool(series: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(series.dtype) and not series.isna().any():
        values = series.to_numpy()
        if values.size and not np.isin(values, (0, 1)).all():
            raise TraceFormatError(f"column {name!r} must hold only 0/1")
        return values.astype(bool)
    raise TraceFormatError(f"column {name!r} has dtype {series.dtype}, not castable to bool")


def _to_table(trace: pd.DataFrame) -> pa.Table:
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        raise TraceFormatError(f"trace frame lacks columns {missing}")
    if len(trace) == 0:
        raise TraceFormatError("empty trace (no accesses)")
    cols = {c: _as_uint64(trace[c], c) for c in _INT_COLUMNS}
    cols["llc_hit"] = _as_bool(trace["llc_hit"], "llc_hit")
    order = np.argsort(cols["instr_id"], kind="stable")
    if not (order[1:] > order[:-1]).all():
        cols = {c: v[order] for c, v in cols.items()}
    return pa.Table.from_arrays([pa.array(cols[c]) for c in TRACE_COLUMNS], schema=TRACE_SCHEMA)


def _encode_metadata(metadata: Mapping[str, object]) -> dict[bytes, bytes]:
    encoded: dict[bytes, bytes] = {}
    json_keys = []
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata keys must be non-empty strings, got {key!r}")
        if key == _JSON_KEYS:
            raise ValueError(f"metadata key {key!r} is reserved")
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"metadata value for {key!r} is not JSON-encodable") from exc
            json_keys.append(key)
        encoded[key.encode()] = text.encode()
    encoded[_JSON_KEYS.encode()] = json.dumps(sorted(json_keys)).encode()
    return encoded


def write_trace_parquet(
    trace: pd.DataFrame,
    path: Path,
    metadata: Mapping[str, str | int | float | dict],
) -> None:
    """Write a trace frame to Parquet atomically, with key-value metadata.

    Only the 5 :data:`TRACE_COLUMNS` are written (other columns are ignored): integer columns are
    cast to uint64 (negative, missing, non-integral or non-numeric values raise), ``llc_hit`` to
    bool (bool or 0/1 integers), and rows are sorted by ``instr_id`` (stable). ``metadata`` values
    that are not ``str`` are stored JSON-encoded and decoded again by :func:`read_trace_parquet`.
    The file is written to a temporary file in the same folder and renamed over ``path``; on any
    error the temporary file is removed and ``path`` is left as it was. Raises TraceFormatError
    (a ValueError) for an empty or invalid trace.
    """
    path = Path(path)
    table = _to_table(trace)
    table = table.replace_schema_metadata(_encode_metadata(metadata))
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        pq.write_table(table, handle)
        handle.flush()
        os.fsync(handle.fileno())


def read_trace_parquet(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read a trace written by :func:`write_trace_parquet`: (frame, decoded metadata)."""
    path = Path(path)
    if not path.exists():
        raise TraceFileNotFoundError(errno.ENOENT, "trace Parquet file not found", str(path))
    table = pq.read_table(path)
    missing = [c for c in TRACE_COLUMNS if c not in table.column_names]
    if missing:
        raise TraceFormatError(f"{path}: lacks trace columns {missing}")
    stored_metadata = table.schema.metadata or {}
    table = table.select(list(TRACE_COLUMNS))
    try:
        table = table.cast(TRACE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TraceFormatError(f"{path}: columns do not match the trace schema: {exc}") from exc
    raw = {k.decode(): v.decode() for k, v in stored_metadata.items()}
    json_keys = set(json.loads(raw.pop(_JSON_KEYS, "[]")))
    raw.pop("pandas", None)
    meta = {k: (json.loads(v) if k in json_keys else v) for k, v in raw.items()}
    frame = pd.DataFrame({c: table.column(c).to_numpy() for c in TRACE_COLUMNS})
    return frame, meta


# ---------------------------------------------------------------------------------------------
# Building and summarising traces
# ---------------------------------------------------------------------------------------------


def summarize_trace(trace: pd.DataFrame) -> dict:
    """Counts of a trace frame: accesses, LLC misses and miss rate, distinct PCs / 4 KiB pages /
    64-byte lines, and the instr_id range (``instr_id_min``, ``instr_id_max``, ``instr_id_span``
    = max - min). For an empty frame the rate and the instr_id fields are None."""
    n = len(trace)
    addr = trace["addr"].to_numpy().astype(np.uint64)
    misses = int(n - np.count_nonzero(trace["llc_hit"].to_numpy(dtype=bool)))
    instr = trace["instr_id"].to_numpy().astype(np.uint64)
    lo = int(instr.min()) if n else None
    hi = int(instr.max()) if n else None
    return {
        "accesses": n,
        "llc_misses": misses,
        "llc_miss_rate": misses / n if n else None,
        "distinct_pcs": int(pd.unique(trace["pc"].to_numpy()).size),
        "distinct_pages": int(np.unique(addr >> np.uint64(12)).size),
        "distinct_lines": int(np.unique(addr >> np.uint64(6)).size),
        "instr_id_min": lo,
        "instr_id_max": hi,
        "instr_id_span": hi - lo if hi is not None and lo is not None else None,
    }
