"""A cell of the experiment grid: the (seed, app, arch) that a job of a stage works on.

It imports nothing heavy (no torch, no numba), so the rules, the plan and every stage can share it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """One (seed, app, arch): the seed of the job's random draws (the `seed` wildcard, an int),
    the traced application (`app`) and the network architecture (`arch`: lstm, mixer, resnet)."""

    seed: int
    app: str
    arch: str
