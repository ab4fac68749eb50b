"""Checkpoints: a state dict plus a small JSON-able header, written atomically.

A network is rebuilt from its header by packd.networks (model_from_checkpoint, load_models).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from packd.atomic import atomic_path
from packd.models import count_parameters


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
