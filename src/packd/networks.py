"""The registry of network kinds: how each is built for a cell at a budget, and rebuilt from a
checkpoint's header.

A method (packd.methods) names the kind it trains; the training stage builds it through
`Network.build`, and every loader of a checkpoint (evaluation, prefetching, blockwise
distillation) rebuilds it through `model_from_checkpoint`, which picks the kind by
header["builder"]: the family of kinds whose checkpoints rebuild alike ("model" when absent: a
plain network of packd.models). A new compression method is one method entry, one entry here (or
a `register_network` call from a plugin, see packd.plugins) and the module that builds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from packd.blockwise import build_blockwise_student
from packd.checkpoint import load_checkpoint
from packd.hashing import compress_from_header, compress_model, hashing_header, smallest_budget
from packd.models import build_model, count_parameters, mlp_hidden_for, size_for_budget
from packd.plugins import load_plugins

PLAIN_BUILDER = "model"  # header["builder"] of a plain network of packd.models (or no builder)


@dataclass(frozen=True, kw_only=True)
class NetworkCell:
    """What a network is built for: one arch of a cell, its sizes and the seed."""

    arch: str
    sizes: Mapping[str, Mapping[str, Any]]  # config["models"][arch]: "teacher" and "student"
    seed: int
    # blockwise students only: the replacement blocks' width and layers per block
    replacement_size: Mapping[str, Any] | None = None


# (untrained network, the header fields that rebuild it: arch, size and any others)
Built = tuple[nn.Module, dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class Network:
    """One network kind."""

    name: str
    # The untrained network for a cell at budget_factor times the student's parameter count
    # (kinds of a fixed size ignore the factor), and the header fields that rebuild it.
    build: Callable[[NetworkCell, float], Built]
    # An untrained network of a checkpoint header's shape, for its state dict to load into.
    rebuild: Callable[[Mapping[str, Any]], nn.Module]
    builder: str = PLAIN_BUILDER  # header["builder"]: kinds that share it share `rebuild`
    # False: nothing to learn; training only sets the output bias to the labels' log-odds.
    trains: bool = True


def parameters_of(arch: str, size: Mapping[str, Any]) -> int:
    """Parameters of a network of this arch and size.

    It builds the network from the global random state, so a network built after it starts from
    other weights: the builders below count in the order their checkpoints were written with.
    """
    return count_parameters(build_model(arch, size))


def build_teacher(cell: NetworkCell, budget_factor: float) -> Built:
    """The arch's teacher (its size is fixed)."""
    size = dict(cell.sizes["teacher"])
    return build_model(cell.arch, size), {"arch": cell.arch, "size": size}


def build_student(cell: NetworkCell, budget_factor: float) -> Built:
    """The arch's student, its width scaled to budget_factor times the student's parameters."""
    student_params = parameters_of(cell.arch, cell.sizes["student"])
    size = dict(cell.sizes["student"])
    if budget_factor != 1.0:
        size = size_for_budget(cell.arch, size, round(budget_factor * student_params))
    return build_model(cell.arch, size), {"arch": cell.arch, "size": size}


def build_mlp(cell: NetworkCell, budget_factor: float) -> Built:
    """A one-hidden-layer MLP of the teacher's parameter count (a zero-effort baseline)."""
    parameters_of(cell.arch, cell.sizes["student"])  # drawn first (see parameters_of)
    size = {"hidden": mlp_hidden_for(parameters_of(cell.arch, cell.sizes["teacher"]))}
    return build_model("mlp", size), {"arch": "mlp", "size": size}


def build_frequency(cell: NetworkCell, budget_factor: float) -> Built:
    """Per-bit frequencies only: the same scores for every sample."""
    return build_model("frequency", {}), {"arch": "frequency", "size": {}}


def rebuild_plain(header: Mapping[str, Any]) -> nn.Module:
    """A network of packd.models of the header's arch and size."""
    return build_model(header["arch"], header["size"])


def build_hashed(
    kind: Literal["roast", "hashednet"], cell: NetworkCell, budget_factor: float
) -> Built:
    """The teacher's architecture with its weights hashed (kind: roast or hashednet) into
    budget_factor times the student's parameter count."""
    budget = round(budget_factor * parameters_of(cell.arch, cell.sizes["student"]))
    parameters_of(cell.arch, cell.sizes["teacher"])  # drawn first (see parameters_of)
    teacher = build_model(cell.arch, cell.sizes["teacher"])
    # A teacher's dense parts (biases, norms) can outnumber a tiny student's parameters: then
    # the budget is the smallest that leaves a hashed array (the table shows params).
    model = compress_model(teacher, kind, smallest_budget(teacher, budget), cell.seed)
    fields = {"arch": cell.arch, "size": dict(cell.sizes["teacher"]), "builder": "hashed"}
    return model, {**fields, "hashing": hashing_header(model)}


def rebuild_hashed(header: Mapping[str, Any]) -> nn.Module:
    """A hashed network of the header's teacher arch, size and hashing settings."""
    return compress_from_header(build_model(header["arch"], header["size"]), header["hashing"])


def build_blockwise(cell: NetworkCell, budget_factor: float) -> Built:
    """An untrained blockwise student (its blocks are trained one job each, then assembled by
    packd.stages.blockwise): the teacher's pre and post around replacement blocks."""
    if cell.replacement_size is None:
        raise ValueError("a blockwise student needs the cell's replacement_size")
    size = {
        "teacher_size": dict(cell.sizes["teacher"]),
        "replacement_size": dict(cell.replacement_size),
    }
    fields = {"arch": cell.arch, "size": size, "builder": "blockwise"}
    return build_blockwise_student(cell.arch, **size), fields


def rebuild_blockwise(header: Mapping[str, Any]) -> nn.Module:
    """A blockwise student of the header's arch, teacher size and replacement size."""
    return build_blockwise_student(header["arch"], **header["size"])


NETWORKS: dict[str, Network] = {
    network.name: network
    for network in [
        Network(name="teacher", build=build_teacher, rebuild=rebuild_plain),
        Network(name="student", build=build_student, rebuild=rebuild_plain),
        Network(name="mlp", build=build_mlp, rebuild=rebuild_plain),
        Network(name="frequency", build=build_frequency, rebuild=rebuild_plain, trains=False),
        Network(
            name="roast",
            build=functools.partial(build_hashed, "roast"),
            rebuild=rebuild_hashed,
            builder="hashed",
        ),
        Network(
            name="hashednet",
            build=functools.partial(build_hashed, "hashednet"),
            rebuild=rebuild_hashed,
            builder="hashed",
        ),
        Network(
            name="blockwise",
            build=build_blockwise,
            rebuild=rebuild_blockwise,
            builder="blockwise",
        ),
    ]
}


def register_network(network: Network) -> None:
    """Add a network kind (from a plugin); its builder must be new or rebuild alike."""
    if network.name in NETWORKS:
        raise ValueError(f"network {network.name!r} is already registered")
    for other in NETWORKS.values():
        if other.builder == network.builder and other.rebuild != network.rebuild:
            raise ValueError(
                f"network {network.name!r}: builder {network.builder!r} is {other.name!r}'s, "
                "which rebuilds differently; name a builder of its own"
            )
    NETWORKS[network.name] = network


def network_named(name: str) -> Network:
    """The registry entry of a network kind."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}")
    return NETWORKS[name]


def build_network(name: str, cell: NetworkCell, budget_factor: float = 1.0) -> Built:
    """The untrained network of one kind for a cell, and the header fields that rebuild it."""
    return network_named(name).build(cell, budget_factor)


def rebuild_network(header: Mapping[str, Any]) -> nn.Module:
    """An untrained network of a checkpoint header's shape, rebuilt by its builder's kind."""
    builder = header.get("builder", PLAIN_BUILDER)
    for network in NETWORKS.values():
        if network.builder == builder:
            return network.rebuild(header)
    raise ValueError(f"unknown network builder {builder!r} in a checkpoint header")


def _loaded_network(header: Mapping[str, Any], state_dict: Mapping[str, Any]) -> nn.Module:
    """The header's network with the state dict loaded, in eval mode."""
    model = rebuild_network(header)
    model.load_state_dict(state_dict)
    return model.eval()


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, header) of a checkpoint, rebuilt from its header."""
    header, state_dict = load_checkpoint(path)
    if header.get("empty"):
        raise ValueError(f"{path} is empty (its cluster was merged away): it holds no model")
    return _loaded_network(header, state_dict), header


def load_models(paths: Sequence[str | Path]) -> tuple[dict[int, nn.Module], list[dict]]:
    """Models by cluster id (0 when the header names none) and their headers; empty
    checkpoints (clusters merged away) are left out of both."""
    models, headers = {}, []
    for path in paths:
        header, state_dict = load_checkpoint(path)
        if not header.get("empty"):
            models[header.get("cluster", 0)] = _loaded_network(header, state_dict)
            headers.append(header)
    return models, headers


load_plugins()
