"""The registry of evaluated models: one entry per method, read by the rules, tables, plots, tests.

A method says which network it trains, which teachers (if any) give its soft targets and how
they are routed, its loss, its display label and colour, and the one thing in which it differs
from PaCKD (the caption of its row). Adding a method is one entry here plus the module that
builds its network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Who produces the model's scores.
Role = Literal["teacher", "routed_teachers", "student", "baseline"]
# Where a distilled method's soft targets come from: each sample's own cluster teacher, or the
# one whole-app teacher. None: trained on labels only.
SoftTargets = Literal["cluster_teachers", "whole_app_teacher"] | None


@dataclass(frozen=True)
class Method:
    """One evaluated model kind of the main table."""

    name: str
    label: str
    color: str
    role: Role
    network: str  # "teacher", "student", "mlp" or "frequency": the architecture it trains
    differs_from_packd: str  # the one difference, for captions
    soft_targets: SoftTargets = None
    kd_settings: str | None = None  # the key under config["kd"] with its alpha and temperature

    @property
    def loss(self) -> str:
        """'kd' for a distilled method, 'bce' for one trained on labels."""
        return "bce" if self.soft_targets is None else "kd"


METHODS: dict[str, Method] = {
    method.name: method
    for method in [
        Method(
            "teacher",
            "teacher (whole app)",
            "#444444",
            "teacher",
            "teacher",
            "the large network itself, trained on labels: the ceiling",
        ),
        Method(
            "packd_teachers",
            "PaCKD teachers (routed)",
            "#999999",
            "routed_teachers",
            "teacher",
            "one large teacher per cluster, each sample scored by its cluster's teacher",
        ),
        Method(
            "packd",
            "PaCKD student",
            "#d62728",
            "student",
            "student",
            "the method: each sample distilled from its own cluster's teacher",
            "cluster_teachers",
            "packd",
        ),
        Method(
            "standard_kd",
            "standard KD",
            "#1f77b4",
            "student",
            "student",
            "one whole-app teacher for every sample",
            "whole_app_teacher",
            "standard_kd",
        ),
        Method(
            "no_kd",
            "no KD",
            "#2ca02c",
            "student",
            "student",
            "no teacher: trained on labels only",
        ),
    ]
}

# PaCKD settings swept by `snakemake sweeps`, encoded in the method name.
SWEEP_METHOD = re.compile(
    r"^packd-(?P<features>[adi])-k(?P<k>\d+)-alpha(?P<alpha>[0-9.]+)-T(?P<temperature>[0-9.]+)$"
)
SWEEP_METHOD_REGEX = r"packd-[adi]-k\d+-alpha[0-9.]+-T[0-9.]+"


def sweep_method_name(features: str, k: int, alpha: float, temperature: float) -> str:
    """The student method name that encodes one PaCKD setting, e.g. packd-a-k3-alpha0.5-T1."""
    return f"packd-{features}-k{int(k)}-alpha{float(alpha):g}-T{float(temperature):g}"


def method_rank(name: str) -> int:
    """Position of a method in tables and figures (sweep variants after the registry)."""
    return list(METHODS).index(name) if name in METHODS else len(METHODS)


def names_with_role(*roles: Role) -> list[str]:
    """Names of the methods with one of these roles, in registry order."""
    return [name for name, method in METHODS.items() if method.role in roles]


def trained_model_regex() -> str:
    """Wildcard regex of every model trained by the student rule (registry students, baselines
    and sweep variants)."""
    return "|".join([*names_with_role("student", "baseline"), SWEEP_METHOD_REGEX])


def evaluated_model_regex() -> str:
    """Wildcard regex of every model the evaluate rule scores."""
    return "|".join([*names_with_role("teacher", "routed_teachers"), trained_model_regex()])


def method_of(name: str) -> Method:
    """The registry entry of a method name (sweep variants are PaCKD)."""
    if name in METHODS:
        return METHODS[name]
    if SWEEP_METHOD.match(name):
        return METHODS["packd"]
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)} and sweep variants")


def method_label(name: str) -> str:
    """Display label of a method (a sweep variant is shown by its name)."""
    return METHODS[name].label if name in METHODS else name


def method_color(name: str) -> str:
    """Plot colour of a method (black for sweep variants)."""
    return METHODS[name].color if name in METHODS else "black"


def method_settings(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What a training job needs to know of a method: its soft targets, clusters, alpha and T."""
    method = method_of(name)
    settings: dict[str, Any] = {
        "method": method.name,
        "network": method.network,
        "soft_targets": method.soft_targets,
    }
    match = SWEEP_METHOD.match(name)
    if match is not None:
        settings.update(
            features=match["features"],
            k=int(match["k"]),
            alpha=float(match["alpha"]),
            temperature=float(match["temperature"]),
        )
    elif method.soft_targets == "cluster_teachers":
        settings.update(
            features=config["cluster"]["features"],
            k=int(config["cluster"]["k"]),
            **config["kd"][method.kd_settings],
        )
    elif method.kd_settings is not None:
        settings.update(config["kd"][method.kd_settings])
    if method.soft_targets is not None:
        settings["scale_soft_by_t2"] = config["kd"].get("scale_soft_by_t2", True)
    return settings
