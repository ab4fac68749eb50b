"""Checkpoints: a state dict plus a small JSON-able header, written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from packd.atomic import atomic_path
from packd.models import build_model, count_parameters


def checkpoint_header(
    model: nn.Module, arch: str, size: Mapping, role: str, app: str, extra: dict | None = None
) -> dict:
    """The standard header: arch, size, params, role (teacher, student, ...), app, extra."""
    return {
        "arch": arch,
        "size": dict(size),
        "params": count_parameters(model),
        "role": role,
        "app": app,
        "extra": dict(extra or {}),
    }


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


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, header), rebuilt from header["arch"] and header["size"]."""
    header, state_dict = load_checkpoint(path)
    model = build_model(header["arch"], header["size"])
    model.load_state_dict(state_dict)
    return model.eval(), header
