"""A distilled method's KD setting: the loss's alpha, temperature and soft-term scale.

Built once from the config (packd.methods.method_settings) and passed as it is to the training
loop and the loss (packd.train, packd.distill). No torch here: the rules build it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KDSettings:
    """alpha weighs the hard (label) term against the soft (teacher) term, both at temperature
    T; scale_soft_by_t2 multiplies the soft term by T**2 (Hinton et al.; False: the authors'
    unscaled form)."""

    alpha: float
    temperature: float
    scale_soft_by_t2: bool

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise ValueError(f"KD needs 0 <= alpha <= 1 and T > 0, got {self}")

    @classmethod
    def from_config(cls, kd_config: Mapping[str, Any], key: str) -> KDSettings:
        """The setting named `key` (packd, authors) of a validated config's `kd` section."""
        setting = kd_config[key]
        return cls(
            alpha=float(setting["alpha"]),
            temperature=float(setting["temperature"]),
            scale_soft_by_t2=bool(kd_config["scale_soft_by_t2"]),
        )
