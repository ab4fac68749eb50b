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
    folder: str = "students"  # results/<folder>/{app}/{arch}/{name}.pt holds its checkpoint

    @property
    def tuned(self) -> bool:
        """Whether its learning rate is chosen on validation (the frequency baseline trains
        nothing, so it has none to choose)."""
        return self.network != "frequency"

    @property
    def phase(self) -> str:
        """The training phase (config `train.<phase>`) it trains with: the teacher's for the
        large networks trained on labels (the teacher itself and the teacher-sized MLP, a
        ceiling check), the student's for every compressed model."""
        return "teacher" if self.network in ("teacher", "mlp") else "student"

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
            folder="teachers",
        ),
        Method(
            "packd_teachers",
            "PaCKD teachers (routed)",
            "#999999",
            "routed_teachers",
            "teacher",
            "one large teacher per cluster, each sample scored by its cluster's teacher",
            folder="teachers",
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
            "one whole-app teacher for every sample (PaCKD's alpha and T)",
            "whole_app_teacher",
            "packd",
        ),
        Method(
            "standard_kd_t5",
            "standard KD, authors' T",
            "#17becf",
            "student",
            "student",
            "one whole-app teacher at the authors' alpha and T (a labelled extra: two differences)",
            "whole_app_teacher",
            "authors",
        ),
        Method(
            "no_kd",
            "no KD",
            "#2ca02c",
            "student",
            "student",
            "no teacher: trained on labels only",
        ),
        Method(
            "frequency",
            "bit frequency",
            "#bcbd22",
            "baseline",
            "frequency",
            "zero-effort baseline: each bit's training frequency is its score for every sample",
        ),
        Method(
            "mlp",
            "plain MLP (teacher size)",
            "#8c564b",
            "baseline",
            "mlp",
            "zero-effort baseline: a one-hidden-layer MLP of the teacher's parameter count",
        ),
        Method(
            "roast",
            "ROAST",
            "#e377c2",
            "student",
            "roast",
            "the teacher's architecture with all weights read from one shared array of the "
            "student's parameter count (ROAST tiles), trained on labels",
        ),
        Method(
            "roast_packd",
            "ROAST + PaCKD",
            "#f7b6d2",
            "student",
            "roast",
            "ROAST model trained with PaCKD's cluster-teacher soft targets",
            "cluster_teachers",
            "packd",
        ),
        Method(
            "hashednet",
            "HashedNet",
            "#7f7f7f",
            "student",
            "hashednet",
            "the teacher's architecture with per-element hashed weights (one array per layer) of "
            "the student's parameter count, trained on labels",
        ),
        Method(
            "blockwise",
            "blockwise KD",
            "#9467bd",
            "student",
            "blockwise",
            "teacher blocks replaced by cheaper ones trained one job per block, then fine-tuned "
            "on labels (no cluster teachers)",
            folder="blockwise",
        ),
        Method(
            "blockwise_packd",
            "blockwise + PaCKD",
            "#c5b0d5",
            "student",
            "blockwise",
            "blockwise student fine-tuned with PaCKD's cluster-teacher soft targets",
            "cluster_teachers",
            "packd",
            folder="blockwise",
        ),
    ]
}

# PaCKD settings swept by `snakemake sweeps`, encoded in the method name.
SWEEP_METHOD = re.compile(
    r"^packd-(?P<features>[adi])-k(?P<k>\d+)-alpha(?P<alpha>[0-9.]+)-T(?P<temperature>[0-9.]+)$"
)
SWEEP_METHOD_REGEX = r"packd-[adi]-k\d+-alpha[0-9.]+-T[0-9.]+"


# A method trained at another memory budget: `<base>-x<factor>` has factor times the student's
# parameter count (the `frontier` target); `<base>-xblockwise` has the blockwise student's count,
# so that a no-KD student of the blockwise students' own size stands beside them.
FRONTIER_BASES = ("no_kd", "packd", "roast", "roast_packd", "hashednet")
BLOCKWISE_SIZE = "blockwise"
FRONTIER_METHOD = re.compile(
    rf"^(?P<base>{'|'.join(FRONTIER_BASES)})-x(?P<factor>[0-9.]+|{BLOCKWISE_SIZE})$"
)
FRONTIER_METHOD_REGEX = rf"(?:{'|'.join(FRONTIER_BASES)})-x(?:[0-9.]+|{BLOCKWISE_SIZE})"


def frontier_method_name(base: str, factor: float | str) -> str:
    """The method at factor times the student's parameter count (the base itself at 1), or at
    the blockwise student's count (factor BLOCKWISE_SIZE)."""
    if factor == BLOCKWISE_SIZE:
        return f"{base}-x{BLOCKWISE_SIZE}"
    return base if float(factor) == 1.0 else f"{base}-x{float(factor):g}"


def sweep_method_name(features: str, k: int, alpha: float, temperature: float) -> str:
    """The student method name that encodes one PaCKD setting, e.g. packd-a-k3-alpha0.5-T1."""
    return f"packd-{features}-k{int(k)}-alpha{float(alpha):g}-T{float(temperature):g}"


def method_rank(name: str) -> int:
    """Position of a method in tables and figures (sweep variants after the registry)."""
    return list(METHODS).index(name) if name in METHODS else len(METHODS)


def names_with_role(*roles: Role) -> list[str]:
    """Names of the methods with one of these roles, in registry order."""
    return [name for name, method in METHODS.items() if method.role in roles]


def names_in_folder(folder: str) -> list[str]:
    """Names of the methods whose checkpoints live under results/<folder>/."""
    return [name for name, method in METHODS.items() if method.folder == folder]


def trained_model_regex() -> str:
    """Wildcard regex of every model trained by the student rule (results/students: registry
    students, baselines and sweep variants)."""
    return "|".join([*names_in_folder("students"), SWEEP_METHOD_REGEX, FRONTIER_METHOD_REGEX])


def evaluated_model_regex() -> str:
    """Wildcard regex of every model the evaluate rule scores."""
    return "|".join([*METHODS, SWEEP_METHOD_REGEX, FRONTIER_METHOD_REGEX])


def checkpoint_paths(
    name: str, seed: int | str, app: str, arch: str, features: str, k: int
) -> list[str]:
    """The checkpoint(s) behind one evaluated model (the cluster teachers for routed teachers)."""
    method = method_of(name)
    folder = f"results/{method.folder}/seed{seed}/{app}/{arch}"
    if method.role == "teacher":
        return [f"{folder}/all.pt"]
    if method.role == "routed_teachers":
        return [f"{folder}/{features}-k{k}/c{c}.pt" for c in range(int(k))]
    return [f"{folder}/{name}.pt"]


def method_of(name: str) -> Method:
    """The registry entry of a method name (sweep variants are PaCKD)."""
    if name in METHODS:
        return METHODS[name]
    if SWEEP_METHOD.match(name):
        return METHODS["packd"]
    frontier = FRONTIER_METHOD.match(name)
    if frontier:
        return METHODS[frontier["base"]]
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
    frontier = FRONTIER_METHOD.match(name)
    settings: dict[str, Any] = {
        "method": method.name,
        "network": method.network,
        "phase": method.phase,
        "soft_targets": method.soft_targets,
        "budget_factor": 1.0,
    }
    if frontier and frontier["factor"] == BLOCKWISE_SIZE:
        # sized in training, where the blockwise student can be built
        settings.update(budget_of=BLOCKWISE_SIZE, blockwise=dict(config.get("blockwise") or {}))
    elif frontier:
        settings["budget_factor"] = float(frontier["factor"])
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
