"""The registry of evaluated models: one entry per method, read by the rules, tables, plots, tests.

A method says which network kind it trains (a key of packd.networks.NETWORKS), which teachers (if
any) give its soft targets and how they are routed, its loss and training phase, its display
label and colour, and the one thing in which it differs from PaCKD (the caption of its row).
Adding a method is one entry here (or a `register_method` call from a plugin, see
packd.plugins), plus a network entry and its module when it trains a new kind of network.

No torch here: the DAG reads this module before any job runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from packd.kd_settings import KDSettings
from packd.plugins import load_plugins

# Who produces the model's scores.
Role = Literal["teacher", "routed_teachers", "student", "baseline"]
# Where a distilled method's soft targets come from: each sample's own cluster teacher, or the
# one whole-app teacher. None: trained on labels only.
SoftTargets = Literal["cluster_teachers", "whole_app_teacher"] | None
# The training settings (config `train.<phase>`) it trains with.
Phase = Literal["teacher", "student"]


@dataclass(frozen=True, kw_only=True)
class Method:
    """One evaluated model kind."""

    name: str
    label: str
    color: str
    role: Role
    network: str  # the network kind it trains: a key of packd.networks.NETWORKS
    differs_from_packd: str  # the one difference, for captions
    soft_targets: SoftTargets = None
    kd_settings: str | None = None  # the key under config["kd"] with its alpha and temperature
    folder: str = "students"  # results/<folder>/{app}/{arch}/{name}.pt holds its checkpoint
    # The teacher's for the large networks trained on labels (the teacher itself and the
    # teacher-sized MLP, a ceiling check), the student's for every compressed model.
    phase: Phase = "student"
    # Whether its learning rate is chosen on validation (False where its network trains
    # nothing, so that it has none to choose: packd.networks.Network.trains).
    tuned: bool = True
    main_table: bool = False  # in config.yaml's default `methods`, the main table
    frontier: bool = False  # trained at every budget of the `frontier` target

    @property
    def loss(self) -> str:
        """'kd' for a distilled method, 'bce' for one trained on labels."""
        return "bce" if self.soft_targets is None else "kd"


METHODS: dict[str, Method] = {
    method.name: method
    for method in [
        Method(
            name="teacher",
            label="teacher (whole app)",
            color="#444444",
            role="teacher",
            network="teacher",
            differs_from_packd="the large network itself, trained on labels: the ceiling",
            folder="teachers",
            phase="teacher",
            main_table=True,
        ),
        Method(
            name="packd_teachers",
            label="PaCKD teachers (routed)",
            color="#999999",
            role="routed_teachers",
            network="teacher",
            differs_from_packd=(
                "one large teacher per cluster, each sample scored by its cluster's teacher"
            ),
            folder="teachers",
            phase="teacher",
            main_table=True,
        ),
        Method(
            name="packd",
            label="PaCKD student",
            color="#d62728",
            role="student",
            network="student",
            differs_from_packd="the method: each sample distilled from its own cluster's teacher",
            soft_targets="cluster_teachers",
            kd_settings="packd",
            main_table=True,
            frontier=True,
        ),
        Method(
            name="standard_kd",
            label="standard KD",
            color="#1f77b4",
            role="student",
            network="student",
            differs_from_packd="one whole-app teacher for every sample (PaCKD's alpha and T)",
            soft_targets="whole_app_teacher",
            kd_settings="packd",
            main_table=True,
        ),
        Method(
            name="standard_kd_t5",
            label="standard KD, authors' T",
            color="#17becf",
            role="student",
            network="student",
            differs_from_packd=(
                "one whole-app teacher at the authors' alpha and T (a labelled extra: two "
                "differences)"
            ),
            soft_targets="whole_app_teacher",
            kd_settings="authors",
        ),
        Method(
            name="no_kd",
            label="no KD",
            color="#2ca02c",
            role="student",
            network="student",
            differs_from_packd="no teacher: trained on labels only",
            main_table=True,
            frontier=True,
        ),
        Method(
            name="frequency",
            label="bit frequency",
            color="#bcbd22",
            role="baseline",
            network="frequency",
            differs_from_packd=(
                "zero-effort baseline: each bit's training frequency is its score for every sample"
            ),
            tuned=False,
            main_table=True,
        ),
        Method(
            name="mlp",
            label="plain MLP (teacher size)",
            color="#8c564b",
            role="baseline",
            network="mlp",
            differs_from_packd=(
                "zero-effort baseline: a one-hidden-layer MLP of the teacher's parameter count"
            ),
            phase="teacher",
            main_table=True,
        ),
        Method(
            name="roast",
            label="ROAST",
            color="#e377c2",
            role="student",
            network="roast",
            differs_from_packd=(
                "the teacher's architecture with all weights read from one shared array of the "
                "student's parameter count (ROAST tiles), trained on labels"
            ),
            frontier=True,
        ),
        Method(
            name="roast_packd",
            label="ROAST + PaCKD",
            color="#f7b6d2",
            role="student",
            network="roast",
            differs_from_packd="ROAST model trained with PaCKD's cluster-teacher soft targets",
            soft_targets="cluster_teachers",
            kd_settings="packd",
            frontier=True,
        ),
        Method(
            name="hashednet",
            label="HashedNet",
            color="#7f7f7f",
            role="student",
            network="hashednet",
            differs_from_packd=(
                "the teacher's architecture with per-element hashed weights (one array per "
                "layer) of the student's parameter count, trained on labels"
            ),
            frontier=True,
        ),
        Method(
            name="blockwise",
            label="blockwise KD",
            color="#9467bd",
            role="student",
            network="blockwise",
            differs_from_packd=(
                "teacher blocks replaced by cheaper ones trained one job per block, then "
                "fine-tuned on labels (no cluster teachers)"
            ),
            folder="blockwise",
        ),
        Method(
            name="blockwise_packd",
            label="blockwise + PaCKD",
            color="#c5b0d5",
            role="student",
            network="blockwise",
            differs_from_packd=(
                "blockwise student fine-tuned with PaCKD's cluster-teacher soft targets"
            ),
            soft_targets="cluster_teachers",
            kd_settings="packd",
            folder="blockwise",
        ),
    ]
}

# Variants: a registry method trained at other settings, named by them. Its name is its
# checkpoint's and metrics' file name and a job's {method} or {model} wildcard; the DAG builds
# each variant from the config as data, and a job reads its wildcard back with variant_of.

# `snakemake sweeps`: PaCKD with other clusters (feature set, k) or another alpha and T.
_SWEEP_GRAMMAR = (
    r"packd-(?P<features>[adi])-k(?P<k>\d+)-alpha(?P<alpha>[0-9.]+)-T(?P<temperature>[0-9.]+)"
)
# A method trained at another memory budget (the `frontier` target): `<base>-x<factor>` has factor
# times the student's parameter count; `<base>-xblockwise` has the blockwise student's count, so
# that a no-KD student of the blockwise students' own size stands beside them.
FRONTIER_BASES = tuple(name for name, method in METHODS.items() if method.frontier)
BLOCKWISE_SIZE = "blockwise"
_BUDGET_GRAMMAR = rf"(?P<base>{'|'.join(FRONTIER_BASES)})-x(?P<factor>[0-9.]+|{BLOCKWISE_SIZE})"


def _unnamed(grammar: str) -> str:
    """The grammar without its group names: a wildcard constraint of the same names."""
    return re.sub(r"\(\?P<\w+>", "(?:", grammar)


SWEEP_METHOD_REGEX = _unnamed(_SWEEP_GRAMMAR)
FRONTIER_METHOD_REGEX = _unnamed(_BUDGET_GRAMMAR)


def _as_named(value: float) -> float:
    """A setting as a variant's name spells it (6 significant digits), so that a variant read
    back from its name equals the variant."""
    return float(f"{float(value):g}")


@dataclass(frozen=True)
class SweepVariant:
    """One PaCKD setting of a sweep: the clusters its teachers are trained on (feature set and
    k) and its KD alpha and temperature."""

    features: str
    k: int
    alpha: float
    temperature: float
    base = "packd"  # the registry method it varies (a class attribute, not a field)

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "alpha", _as_named(self.alpha))
        object.__setattr__(self, "temperature", _as_named(self.temperature))

    @property
    def name(self) -> str:
        """Its method name, e.g. packd-a-k3-alpha0.5-T1."""
        return f"packd-{self.features}-k{self.k}-alpha{self.alpha:g}-T{self.temperature:g}"


@dataclass(frozen=True)
class BudgetVariant:
    """A method at factor times the student's parameter count (at 1: the method itself), or at
    the blockwise student's count (factor BLOCKWISE_SIZE)."""

    base: str
    factor: float | str

    def __post_init__(self) -> None:
        if self.factor != BLOCKWISE_SIZE:
            object.__setattr__(self, "factor", _as_named(float(self.factor)))

    @property
    def name(self) -> str:
        """Its method name, e.g. no_kd-x4, no_kd-xblockwise, or no_kd at factor 1."""
        if self.factor == BLOCKWISE_SIZE:
            return f"{self.base}-x{BLOCKWISE_SIZE}"
        return self.base if self.factor == 1.0 else f"{self.base}-x{self.factor:g}"


_SWEEP_NAME = re.compile(_SWEEP_GRAMMAR)
_BUDGET_NAME = re.compile(_BUDGET_GRAMMAR)


def variant_of(name: str) -> SweepVariant | BudgetVariant | None:
    """The variant a method name spells (None: a registry name, or no method's name).

    The one place a name is read back into settings: where a wildcard (or a file name) comes in.
    """
    sweep, budget = _SWEEP_NAME.fullmatch(name), _BUDGET_NAME.fullmatch(name)
    try:
        if sweep is not None:
            return SweepVariant(
                features=sweep["features"],
                k=int(sweep["k"]),
                alpha=float(sweep["alpha"]),
                temperature=float(sweep["temperature"]),
            )
        if budget is not None:
            factor = budget["factor"]
            size = factor if factor == BLOCKWISE_SIZE else float(factor)
            return BudgetVariant(budget["base"], size)
    except ValueError:  # digits and dots that spell no number (1.2.3)
        return None
    return None


def register_method(method: Method) -> None:
    """Add a method (from a plugin) after the built-in ones; it joins the main table when a
    config names it in `methods`."""
    name = method.name
    if name in METHODS or _SWEEP_NAME.fullmatch(name) or _BUDGET_NAME.fullmatch(name):
        raise ValueError(f"method {method.name!r} is taken (a registry, sweep or frontier name)")
    if method.frontier:
        raise ValueError(
            f"method {method.name!r}: the frontier's methods are the built-in ones "
            "(workflow/schemas/config.schema.yaml lists them)"
        )
    METHODS[method.name] = method


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
    """The registry entry of a method name (a variant's: the method it varies)."""
    if name in METHODS:
        return METHODS[name]
    variant = variant_of(name)
    if variant is None:
        raise ValueError(
            f"unknown method {name!r}; known: {', '.join(METHODS)} and their sweep and budget "
            "variants"
        )
    return METHODS[variant.base]


def method_label(name: str) -> str:
    """Display label of a method (a sweep variant is shown by its name)."""
    return METHODS[name].label if name in METHODS else name


def method_color(name: str) -> str:
    """Plot colour of a method (black for sweep variants)."""
    return METHODS[name].color if name in METHODS else "black"


def method_settings(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What a training job needs to know of a method (name: its wildcard) under a validated
    config: its network, phase and soft targets, its parameter budget, the clusters its teachers
    were trained on (features, k) and its KD settings ("kd"; None for a method without soft
    targets)."""
    method = method_of(name)
    variant = variant_of(name)
    settings: dict[str, Any] = {
        "method": method.name,
        "network": method.network,
        "phase": method.phase,
        "soft_targets": method.soft_targets,
        "budget_factor": 1.0,
    }
    if isinstance(variant, BudgetVariant) and variant.factor == BLOCKWISE_SIZE:
        # sized in training, where the blockwise student can be built
        settings.update(budget_of=BLOCKWISE_SIZE, blockwise=config["blockwise"])
    elif isinstance(variant, BudgetVariant):
        settings["budget_factor"] = variant.factor
    kd = None
    if isinstance(variant, SweepVariant):
        settings.update(features=variant.features, k=variant.k)
        scale = bool(config["kd"]["scale_soft_by_t2"])
        kd = KDSettings(variant.alpha, variant.temperature, scale_soft_by_t2=scale)
    elif method.soft_targets is not None:
        if method.soft_targets == "cluster_teachers":
            settings.update(features=config["cluster"]["features"], k=int(config["cluster"]["k"]))
        if method.kd_settings is None:
            raise ValueError(f"method {method.name!r} has soft targets but no kd_settings key")
        kd = KDSettings.from_config(config["kd"], method.kd_settings)
    settings["kd"] = kd
    return settings


def settings_record(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Method settings as a checkpoint header records them: JSON (the KD settings a mapping)."""
    kd = settings.get("kd")
    return {**settings, "kd": None if kd is None else dataclasses.asdict(kd)}


load_plugins()
