"""What the DAG needs to know before any job runs: block counts and priorities, a blockwise
replacement's size, the classic prefetchers and the replay's defaults, and a traced program's rule
input.

workflow/rules/*.smk import this module (beside packd.config and packd.methods) and nothing
heavier: building the DAG must not import torch or numba, which only the jobs need.
tests/unit/test_plan.py checks that a dry run imports neither.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packd.shapes import CHUNKS, HISTORY, RESNET_EXPANSION

# ---------------------------------------------------------------------------------------------
# Blockwise distillation (workflow/rules/blockwise.smk)


def replacement_size_of(settings: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """The replacement_size (width, layers_per_block) of one arch under config["blockwise"]."""
    return {"width": settings["width"], "layers_per_block": settings["layers_per_block"][arch]}


def block_count(arch: str, teacher_size: Mapping[str, Any], layers_per_block: int) -> int:
    """How many blocks teacher_blocks cuts a teacher of this size into (no model is built).

    The rules call it to expand the block files, so it must stay cheap; a test checks it against
    len(teacher_blocks(...).blocks).
    """
    if layers_per_block < 1:
        raise ValueError(f"layers_per_block must be >= 1, got {layers_per_block}")
    if arch == "lstm":
        return math.ceil(int(teacher_size["layers"]) / layers_per_block)
    if arch == "mixer":
        return math.ceil(int(teacher_size["depth"]) / layers_per_block)
    if arch == "resnet":
        if layers_per_block != 1:
            raise ValueError("ResNet blocks are its stages; layers_per_block does not apply")
        return sum(1 for blocks in teacher_size["layers"] if blocks > 0)
    raise ValueError(f"unknown arch '{arch}'; valid: lstm, mixer, resnet")


def block_output_sizes(
    arch: str, teacher_size: Mapping[str, Any], layers_per_block: int
) -> list[int]:
    """Elements per sample of each teacher block's output (no model is built): what a block's
    training time grows with on CPU, so the costliest block jobs can be started first.

    A test checks it against the cut teacher's activations.
    """
    count = block_count(arch, teacher_size, layers_per_block)
    if arch == "lstm":
        return [HISTORY * int(teacher_size["hidden"])] * count
    if arch == "mixer":
        patch = int(teacher_size.get("patch", HISTORY))
        tokens = (HISTORY // patch) * (CHUNKS // patch)
        return [tokens * int(teacher_size["dim"])] * count
    expansion = RESNET_EXPANSION[teacher_size["block"]]
    sizes, side = [], HISTORY
    for stage, blocks in enumerate(teacher_size["layers"]):
        if blocks > 0:
            side = math.ceil(side / 2) if stage > 0 else side  # its first block has stride 2
            sizes.append(int(teacher_size["width"]) * 2**stage * expansion * side * side)
    return sizes


def block_priorities(
    arch: str, teacher_size: Mapping[str, Any], layers_per_block: int
) -> list[int]:
    """Snakemake priority of each block job: the rank of its output size (largest: highest).

    Started longest first, the ResNet's 4 unequal stages split evenly over 2 cores whatever order
    Snakemake would pick among equals.
    """
    sizes = block_output_sizes(arch, teacher_size, layers_per_block)
    distinct = sorted(set(sizes))
    return [distinct.index(size) for size in sizes]


# ---------------------------------------------------------------------------------------------
# Prefetch evaluation (workflow/rules/prefetch.smk; the replay is packd.prefetch)

#: The classic prefetchers the workflow compares the models with, by name.
CLASSIC_PREFETCHERS = ("next_line", "ip_stride", "best_offset")
DEFAULT_DEGREE = 2  # the competition's limit of prefetches per load
# A prefetch fills its line this many LLC accesses after the load that issued it: a DRAM fill
# (about 200 cycles) outlasts a few LLC accesses of a memory-bound loop, and 1 would count a
# prefetch for the very next access as timely. The workflow's replays use it.
DEFAULT_DISTANCE = 4
# The prefetch filter skips a line demanded or prefetched within this many accesses (this one
# included); in hardware, a table of the last 64 accesses' lines and their prefetches (64 *
# (1 + degree) entries). It spans the fill distance many times over, so a line in flight or just
# filled is not asked for again, and it is far shorter than an LLC line's lifetime (thousands of
# accesses), so a line it skips is all but surely still cached.
DEFAULT_FILTER_WINDOW = 64


# ---------------------------------------------------------------------------------------------
# Traces (workflow/rules/traces.smk)


def command_program_path(command: str | Sequence[str], base_dir: Path) -> list[str]:
    """[the program's absolute path] when the command names it by a path, else [].

    For a rule input, so that a rebuilt program is traced again. It does not check that the
    program exists: another rule may build it, and Snakemake names a missing input itself.
    """
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not argv or "/" not in argv[0]:
        return []
    return [os.path.abspath(Path(base_dir) / Path(argv[0]).expanduser())]
