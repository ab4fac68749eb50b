"""Checkpoints: a state dict plus a small JSON-able header, written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from packd.atomic import atomic_path
from packd.models import build_model, count_parameters


def checkpoint_header(
    model: nn.Module | None, arch: str, size: Mapping, role: str, app: str, **fields: object
) -> dict:
    """The standard header: arch, size, params, role (teacher, student, ...), app, and fields
    such as the training history (model None: an empty checkpoint, no params)."""
    header: dict = {"arch": arch, "size": dict(size), "role": role, "app": app}
    if model is not None:
        header["params"] = count_parameters(model)
    return {**header, **fields}


def save_checkpoint(
    path: str | Path, model_state: Mapping[str, torch.Tensor], header: dict
) -> None:
    """torch.save {"header", "state_dict"} to a temporary file in the same folder, then rename."""
    json.dumps(header)  # fail early: the header must stay JSON-able (and weights_only-loadable)
    state_dict = {name: tensor.detach().cpu() for name, tensor in model_state.items()}
    with atomic_path(path) as temporary:
        torch.save({"header": header, "state_dict": state_dict}, temporary)


def load_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, state_dict) of a checkpoint, loaded with weights_only=True (no arbitrary code)."""
    stored = torch.load(path, map_location="cpu", weights_only=True)
    return stored["header"], stored["state_dict"]


def rebuild_network(header: Mapping) -> nn.Module:
    """An untrained network of the header's shape: header["builder"] names how it was built
    (a plain model of the arch when absent)."""
    builder = header.get("builder", "model")
    if builder == "blockwise":
        from packd.blockwise import build_blockwise_student

        return build_blockwise_student(header["arch"], **header["size"])
    if builder == "hashed":
        from packd.hashing import compress_from_header

        return compress_from_header(build_model(header["arch"], header["size"]), header["hashing"])
    if builder != "model":
        raise ValueError(f"unknown network builder {builder!r} in a checkpoint header")
    return build_model(header["arch"], header["size"])


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module | None, dict]:
    """(model in eval mode, header), rebuilt from header["arch"] and header["size"]; the model
    is None for an empty checkpoint."""
    header, state_dict = load_checkpoint(path)
    if header.get("empty"):
        return None, header
    model = rebuild_network(header)
    model.load_state_dict(state_dict)
    return model.eval(), header


def load_models(paths: Sequence[str | Path]) -> tuple[dict[int, nn.Module], list[dict]]:
    """Models by cluster id (0 when the header names none) and their headers; empty
    checkpoints (clusters merged away) are left out of both."""
    models, headers = {}, []
    for path in paths:
        model, header = model_from_checkpoint(path)
        if not header.get("empty"):
            models[header.get("cluster", 0)] = model
            headers.append(header)
    return models, headers
