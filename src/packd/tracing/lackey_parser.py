"""The parser of valgrind lackey's --trace-mem output: its load lines, inside a ROI, to a
LoadStream."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from packd.tracing.common import LoadStream

_TAIL_LINES = 20  # lines of the program's stdout/stderr and of valgrind's log quoted in errors

_HEX = np.zeros(256, dtype=np.uint64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint64)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_ADDR_OFFSET = 3  # "I  0401126,3" and " L 1ffefffd38,8": the address starts at column 3
# valgrind's start-up banner: the same in every run, so left out of error messages.
_VALGRIND_PREAMBLE = (
    "Lackey, an example",
    "Copyright (C)",
    "Using Valgrind",
    "Command:",
    "Parent PID",
)


def _parse_hex_fields(buf: np.ndarray, line_starts: np.ndarray, commas: np.ndarray) -> np.ndarray:
    """Addresses of lackey lines: the hex digits from column 3 up to each line's comma."""
    if line_starts.size == 0:
        return np.zeros(0, dtype=np.uint64)
    first = line_starts + _ADDR_OFFSET
    comma = commas[np.searchsorted(commas, first)]  # each line's own comma: the first after it
    width = comma - first
    max_width = int(width.max())
    # One gather of the digits right-aligned at the comma; columns left of a short address are
    # masked, so each column costs one pass instead of one pass per possible digit.
    column = np.arange(max_width)
    pos = comma[:, None] - max_width + column
    digits = _HEX[buf[np.maximum(pos, 0)]]
    digits[pos < first[:, None]] = 0
    shifts = np.uint64(4) * (max_width - 1 - column).astype(np.uint64)
    return np.bitwise_or.reduce(digits << shifts, axis=1)


class _LackeyParser:
    """Incremental parser of lackey --trace-mem output, in chunks of whole lines.

    Outside the ROI only the I lines are counted (C-speed bytes.count) and the ROI's first
    instruction is searched for as text; inside it the lines are parsed with numpy.
    """

    def __init__(self, roi: tuple[int, int] | None, max_loads: int | None) -> None:
        self.max_loads = max_loads
        self.roi: tuple[int, int] | None = None
        self.recording = True  # without a ROI, the whole program is recorded
        self.set_roi(roi)
        self.n_instr = 0  # I lines seen so far, over the whole run
        self.last_pc = 0
        self.n_loads = 0
        self.roi_entries = 0  # times the begin symbol's first instruction ran outside the ROI
        self.roi_exits = 0  # times the end symbol's first instruction closed the ROI
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.log_tail: collections.deque[str] = collections.deque(maxlen=4 * _TAIL_LINES)

    def set_roi(self, roi: tuple[int, int] | None) -> None:
        """Record only from the run-time address roi[0] to roi[1] (call before the first feed)."""
        self.roi = roi
        self.recording = roi is None
        if roi is not None:
            # lackey prints "I  %08lx,%lu": the instruction's line, up to its comma, as text.
            self._begin_line = b"I  %08x," % roi[0]
            self._end_line = b"I  %08x," % roi[1]

    @property
    def done(self) -> bool:
        """True once max_loads loads have been collected."""
        return self.max_loads is not None and self.n_loads >= self.max_loads

    @staticmethod
    def _find_line(data: bytes, line_head: bytes, pos: int) -> int:
        """Start of the first line at or after pos (a line start) that begins with line_head."""
        if data.startswith(line_head, pos):
            return pos
        hit = data.find(b"\n" + line_head, pos)
        return -1 if hit < 0 else hit + 1

    def _keep_log_lines(self, data: bytes) -> None:
        """Keep valgrind's own "==pid==" lines (a fatal signal's report), quoted in errors."""
        pos = 0 if data.startswith(b"==") else data.find(b"\n==")
        while pos >= 0:
            start = pos + (data[pos] == 10)
            end = data.find(b"\n", start)
            line = data[start:end].decode(errors="replace")
            message = line.split("==", 2)[-1].strip()
            if message and not message.startswith(_VALGRIND_PREAMBLE):
                self.log_tail.append(line)
            pos = data.find(b"\n==", end)

    def feed(self, data: bytes) -> None:
        """Parse complete lines (data must end with a newline)."""
        self._keep_log_lines(data)
        view = memoryview(data)
        pos = 0
        while pos < len(data) and not self.done:
            if not self.recording:
                hit = self._find_line(data, self._begin_line, pos)
                stop = len(data) if hit < 0 else hit
                if stop > pos:
                    self.n_instr += data.count(b"\nI", pos, stop) + data.startswith(b"I", pos)
                if hit >= 0:
                    self.recording = True
                    self.roi_entries += 1
            else:
                hit = -1 if self.roi is None else self._find_line(data, self._end_line, pos)
                stop = len(data) if hit < 0 else hit
                self._parse_recorded(np.frombuffer(view[pos:stop], dtype=np.uint8))
                if hit >= 0:
                    self.recording = False
                    self.roi_exits += 1
            pos = stop

    def _parse_recorded(self, buf: np.ndarray) -> None:
        """Collect the loads of whole lines that all lie in the ROI."""
        if buf.size == 0:
            return
        ends = np.flatnonzero(buf == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        c0 = buf[starts]
        c1 = buf[np.minimum(starts + 1, buf.size - 1)]
        is_instr = c0 == ord("I")
        # " M" (modify) reads before it writes, so it counts as a load.
        is_load = (c0 == ord(" ")) & ((c1 == ord("L")) | (c1 == ord("M")))
        kept = np.flatnonzero(is_instr | is_load)
        kept_instr = is_instr[kept]
        instr_before = np.cumsum(kept_instr)  # I lines up to and including each kept line
        # The executing instruction of a load: the last I line before it (maybe in an earlier
        # segment, then it is last_pc).
        last_instr = np.maximum.accumulate(np.where(kept_instr, np.arange(kept.size), -1))
        loads = np.flatnonzero(~kept_instr)
        if self.max_loads is not None:
            loads = loads[: self.max_loads - self.n_loads]
        commas = np.flatnonzero(buf == ord(","))
        if loads.size:
            addr = _parse_hex_fields(buf, starts[kept[loads]], commas)
            pc_line = last_instr[loads]
            pc = np.full(loads.size, self.last_pc, dtype=np.uint64)
            own = pc_line >= 0
            pc[own] = _parse_hex_fields(buf, starts[kept[pc_line[own]]], commas)
            instr_id = (self.n_instr + instr_before[loads] - 1).clip(0).astype(np.uint64)
            self.parts.append((instr_id, pc, addr))
            self.n_loads += int(loads.size)
        if kept_instr.any():
            last = starts[kept[last_instr[-1]]]
            self.last_pc = int(_parse_hex_fields(buf, np.array([last]), commas)[0])
        self.n_instr += int(instr_before[-1]) if kept.size else 0

    def result(self, metadata: dict[str, Any] | None = None) -> LoadStream:
        """All collected loads as one LoadStream."""
        if self.parts:
            cols = [np.concatenate([p[i] for p in self.parts]) for i in range(3)]
        else:
            cols = [np.zeros(0, dtype=np.uint64) for _ in range(3)]
        return LoadStream(
            instr_id=cols[0],
            pc=cols[1],
            addr=cols[2],
            instr_id_kind="instruction_count",
            metadata=dict(metadata or {}),
        )
