"""Blockwise students at a config's sizes: blocks, parameters per width, and activation storage.

Usage: python benchmarks_scripts/blockwise_sizes.py [--configfile config.yaml]
       [--widths 0.125 0.25 0.5 1.0] [--markdown docs/benchmarks/blockwise_sizes.md]
Builds each arch's teacher at models.<arch>.teacher and cuts it as blockwise.layers_per_block
says; nothing is trained. Prints the teacher's and the assembled student's parameter counts at
each replacement width, each block's count against its replacement's at the config's width, and
the teacher's activations per sample at every block boundary with the float16 storage they take
for the config's blockwise.max_samples (what teacher_block_activations writes per (seed, app,
arch)).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml
from tabulate import tabulate

from packd.benchpage import write_page
from packd.blockwise import block_activations, blockwise_parameter_counts, teacher_blocks
from packd.config import with_schema_defaults
from packd.models import CHUNKS, HISTORY, build_model
from packd.plan import replacement_size_of

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
PAGE_NOTE = (
    "Parameter counts come from `blockwise_parameter_counts` (teacher, assembled student, and "
    "`shared`: the teacher's pre and post, which every student keeps as they are and which "
    "bound how small it can get). Activations: elements per sample at each block boundary "
    "(boundary i is the input of block i), and the float16 MB of all boundaries for the "
    "config's blockwise.max_samples train + val samples. Nothing here is timed; the block "
    "stage's speed-up is on [blockwise.md](blockwise.md)."
)


def size_rows(arch: str, teacher_size: dict, settings: dict, widths: list[float]) -> list[list]:
    """One row per width: blocks, teacher, shared and student parameters."""
    rows = []
    for width in widths:
        replacement = {**replacement_size_of(settings, arch), "width": width}
        counts = blockwise_parameter_counts(arch, teacher_size, replacement)
        ratio = counts["teacher"] / counts["student"]
        blocks = len(counts["teacher_blocks"])
        rows.append(
            [arch, width, blocks, counts["teacher"], counts["shared"], counts["student"], ratio]
        )
    return rows


def block_rows(arch: str, teacher_size: dict, settings: dict) -> list[list]:
    """One row per block at the config's width: the teacher block's and its replacement's counts."""
    counts = blockwise_parameter_counts(arch, teacher_size, replacement_size_of(settings, arch))
    pairs = zip(counts["teacher_blocks"], counts["replacement_blocks"], strict=True)
    return [
        [arch, index, teacher, replacement] for index, (teacher, replacement) in enumerate(pairs)
    ]


def activation_row(arch: str, teacher_size: dict, settings: dict) -> list:
    """Elements per sample at each boundary, and the float16 MB for max_samples samples."""
    torch.manual_seed(0)
    split = teacher_blocks(
        build_model(arch, teacher_size), arch, settings["layers_per_block"][arch]
    )
    one_sample = np.zeros((1, HISTORY, CHUNKS), dtype=np.float32)
    elements = [int(boundary[0].size) for boundary in block_activations(split, one_sample)]
    samples = sum(settings["max_samples"].values())
    megabytes = sum(elements) * samples * 2 / 1e6
    return [arch, ", ".join(f"{count:,}" for count in elements), samples, megabytes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--widths", nargs="*", type=float, default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    settings = with_schema_defaults("blockwise", config.get("blockwise", {}), SCHEMA)
    # Every arch with sizes in the config (the frontier runs them with --config archs=[...])
    archs = list(config["models"])
    teachers = {arch: config["models"][arch]["teacher"] for arch in archs}

    sizes = [
        row for arch in archs for row in size_rows(arch, teachers[arch], settings, args.widths)
    ]
    blocks = [row for arch in archs for row in block_rows(arch, teachers[arch], settings)]
    storage = [activation_row(arch, teachers[arch], settings) for arch in archs]
    layers = ", ".join(f"{arch} {settings['layers_per_block'][arch]}" for arch in archs)
    shown = args.configfile.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    printed = [
        f"sizes from {shown}: blockwise.width {settings['width']}, layers_per_block {layers}",
        "",
        "Parameters per replacement width",
        tabulate(
            sizes,
            headers=["arch", "width", "blocks", "teacher", "shared", "student", "teacher/student"],
            floatfmt=("", "g", "", "", "", "", ".1f"),
            intfmt=",",
        ),
        "",
        f"Per block at width {settings['width']}",
        tabulate(blocks, headers=["arch", "block", "teacher block", "replacement"], intfmt=","),
        "",
        "Teacher activations at the block boundaries",
        tabulate(
            storage,
            headers=["arch", "elements per sample", "samples", "MB at float16"],
            floatfmt=".1f",
            intfmt=",",
        ),
    ]
    print("\n".join(printed))
    if args.markdown:
        title = "Blockwise students at config.yaml's sizes"
        write_page(args.markdown, title, PAGE_NOTE, "\n".join(printed))


if __name__ == "__main__":
    main()
