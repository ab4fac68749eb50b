"""A binary's code symbols (nm) and ELF headers: the functions a lackey ROI names, found by
mangled or demangled name, and whether anything in the program calls them."""

from __future__ import annotations

import collections
import difflib
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packd.tracing.common import TracingError, _run

_FUNCTION_TYPES = frozenset("TtWwi")  # nm types of code symbols


@dataclass(frozen=True)
class FunctionSymbol:
    """A code symbol of a binary: its mangled and demangled names, link-time address, size."""

    name: str
    demangled: str
    address: int
    size: int
    exported: bool  # in the dynamic symbol table: code outside the binary may call it


def _nm_functions(path: Path, *flags: str) -> list[tuple[int, int, str, str]]:
    """(address, size, type, name) of the code symbols `nm -p -S FLAGS` lists, in table order."""
    nm = shutil.which("nm")
    if nm is None:
        raise TracingError(
            ["nm"], "nm not found on PATH: the ROI needs it (apt-get install binutils)"
        )
    proc = _run([nm, "-p", "-S", "--defined-only", *flags, str(path)])
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) >= 3 and len(parts[1]) == 1:  # no size column: "addr type name"
            address, size, kind, name = parts[0], "0", parts[1], line.split(maxsplit=2)[2]
        elif len(parts) == 4:
            address, size, kind, name = parts
        else:
            continue
        if kind in _FUNCTION_TYPES:
            rows.append((int(address, 16), int(size, 16), kind, name))
    return rows


def function_symbols(binary: Path) -> list[FunctionSymbol]:
    """The code symbols of a binary, each with its mangled and demangled (nm -C) name."""
    raw = _nm_functions(binary)
    demangled = _nm_functions(binary, "-C")
    if len(raw) != len(demangled):  # same table, same order: only the names differ
        raise TracingError(["nm", str(binary)], "nm and nm -C list different symbols")
    try:
        exported = {row[3] for row in _nm_functions(binary, "-D")}
    except TracingError:  # no dynamic symbol table (a static binary)
        exported = set()
    return [
        FunctionSymbol(name, plain[3], address, size, name in exported)
        for (address, size, _, name), plain in zip(raw, demangled, strict=True)
    ]


def _squash(name: str) -> str:
    """A C++ name without blanks: `f(long const*, int)` and `f(long const*,int)` compare equal."""
    return "".join(name.split())


def _without_parameters(demangled: str) -> str:
    """`ns::f(int) const [clone ._omp_fn.0]` -> `ns::f [clone ._omp_fn.0]` (clone suffix kept)."""
    depth = 0
    anonymous = "(anonymous namespace)"
    i = 0
    while i < len(demangled):
        ch = demangled[i]
        if demangled.startswith(anonymous, i):
            i += len(anonymous)
            continue
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            clone = demangled.find(" [clone ", i)
            return demangled[:i] + (demangled[clone:] if clone >= 0 else "")
        i += 1
    return demangled


_INLINING_HINT = (
    "a function inlined at every call site has no code of its own that runs (static inline, "
    "always_inline, or -O2/LTO deciding so): use a function that is really called (mark it "
    "__attribute__((noinline))) or, for an OpenMP loop, its outlined region (NAME._omp_fn.N)"
)


def _describe(symbol: FunctionSymbol) -> str:
    """`demangled (mangled)`, or the name alone for a C name."""
    if symbol.demangled == symbol.name:
        return symbol.name
    return f"{symbol.demangled} ({symbol.name})"


def find_function(binary: Path, wanted: str, symbols: Sequence[FunctionSymbol]) -> FunctionSymbol:
    """The function a ROI symbol names: mangled, demangled, or demangled without parameters.

    Raises TracingError naming the binary and the symbol with close matches when none matches,
    and the candidates when the name is ambiguous (an overloaded C++ name).
    """
    key = _squash(wanted)
    matches = [s for s in symbols if s.name == wanted]
    if not matches:
        matches = [s for s in symbols if _squash(s.demangled) == key]
    if not matches:
        matches = [s for s in symbols if _squash(_without_parameters(s.demangled)) == key]
    by_address = {s.address: s for s in matches}  # aliases (e.g. C1/C2 constructors) are one
    if len(by_address) == 1:
        return matches[0]
    if by_address:
        listed = "\n  ".join(_describe(s) for s in by_address.values())
        raise TracingError(
            [str(binary)],
            f"ROI symbol {wanted!r} is ambiguous in {binary}: it names {len(by_address)} "
            f"functions; give one of these (demangled with its parameters, or mangled):\n  "
            + listed,
        )
    raise TracingError([str(binary)], _not_found_message(binary, wanted, symbols))


def _not_found_message(binary: Path, wanted: str, symbols: Sequence[FunctionSymbol]) -> str:
    """Why a ROI symbol may be missing, with the binary's names that look like it."""
    if not symbols:
        return (
            f"ROI symbol {wanted!r} not found: {binary} has no symbol table (stripped?); "
            "rebuild it without -s or strip"
        )
    by_name: dict[str, list[FunctionSymbol]] = collections.defaultdict(list)
    for s in symbols:
        for name in {s.name, s.demangled, _without_parameters(s.demangled)}:
            by_name[name].append(s)  # a short name lists all its overloads
    short = _without_parameters(wanted)
    close = difflib.get_close_matches(wanted, list(by_name), n=5, cutoff=0.6)
    close += difflib.get_close_matches(short, list(by_name), n=5, cutoff=0.6)
    lowered = short.lower()
    containing = [n for n in by_name if lowered in n.lower()][:5]
    suggestions = {_describe(s) for n in close + containing for s in by_name[n]}
    msg = f"ROI symbol {wanted!r} not found among the {len(symbols)} functions of {binary}"
    if suggestions:
        msg += ". Close matches:\n  " + "\n  ".join(sorted(suggestions))
    return (
        msg + "\nLikely causes: a typo (names may be mangled, demangled, or demangled without "
        f"parameters); {_INLINING_HINT}; a function of a shared library (only the program's own "
        "functions can mark the ROI)."
    )


def _elf_sections(path: Path) -> list[tuple[int, int, int, int]] | None:
    """(type, flags, file offset, size) of each section of a little-endian ELF64 file, or None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        shoff = int.from_bytes(head[0x28:0x30], "little")
        shentsize = int.from_bytes(head[0x3A:0x3C], "little")
        shnum = int.from_bytes(head[0x3C:0x3E], "little")
        f.seek(shoff)
        table = f.read(shentsize * shnum)
    sections = []
    for i in range(shnum):
        entry = table[i * shentsize : (i + 1) * shentsize]
        sh_type = int.from_bytes(entry[4:8], "little")
        flags, _, offset, size = (
            int.from_bytes(entry[j : j + 8], "little") for j in range(8, 40, 8)
        )
        sections.append((sh_type, flags, offset, size))
    return sections


_SHF_ALLOC, _SHF_EXECINSTR = 0x2, 0x4
_SHT_NOBITS, _SHT_SYMTAB, _SHT_DYNSYM = 8, 2, 11


def _is_referenced(binary: Path, symbol: FunctionSymbol) -> bool | None:
    """Whether anything in the binary calls the function or takes its address; None: unknown.

    Code: objdump's disassembly names the address in any call, jump or address computation
    outside the function. Data (function pointers, vtables, OpenMP's outlined regions, PIE
    relocations): its 8 little-endian bytes in a loaded data section. A false match only makes
    the check lenient.
    """
    objdump = shutil.which("objdump")
    sections = _elf_sections(binary)
    if objdump is None or sections is None or symbol.exported:
        return None
    proc = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(binary)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    target = re.compile(rf"(?<![0-9a-fA-F]){symbol.address:x}(?![0-9a-fA-F])")
    own_code = range(symbol.address, symbol.address + max(symbol.size, 1))
    for line in proc.stdout.splitlines():
        where, sep, instruction = line.partition(":\t")
        if not sep or not target.search(instruction):
            continue
        try:
            if int(where.strip(), 16) not in own_code:
                return True
        except ValueError:
            continue
    pointer = symbol.address.to_bytes(8, "little")
    with open(binary, "rb") as f:
        for sh_type, flags, offset, size in sections:
            loaded_data = flags & _SHF_ALLOC and not flags & _SHF_EXECINSTR
            if not loaded_data or sh_type in (_SHT_NOBITS, _SHT_SYMTAB, _SHT_DYNSYM):
                continue
            f.seek(offset)
            if pointer in f.read(size):
                return True
    return False


def _check_called(binary: Path, wanted: str, symbol: FunctionSymbol) -> None:
    """Fail before the run when nothing in the program calls a ROI function (it was inlined)."""
    if _is_referenced(binary, symbol) is False:
        raise TracingError(
            [str(binary)],
            f"ROI symbol {wanted!r} ({_describe(symbol)} at {symbol.address:#x}) is in {binary}, "
            "but nothing in the program calls it or takes its address, so it never runs and "
            f"the ROI would never start: {_INLINING_HINT}.",
        )


def _elf_type(path: Path) -> str | None:
    """'exec' (fixed addresses), 'dyn' (PIE: loaded at a base) or None (not an ELF file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return None
    if len(head) < 18 or head[:4] != b"\x7fELF":
        return None
    e_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
    return {2: "exec", 3: "dyn"}.get(e_type)
