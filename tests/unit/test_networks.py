"""The network registry: every method's kind is built and rebuilt through it, and checkpoints in
the header format written so far load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from packd.checkpoint import checkpoint_header, save_checkpoint
from packd.methods import METHODS
from packd.models import LSTMPrefetcher
from packd.networks import (
    NETWORKS,
    Network,
    NetworkCell,
    build_network,
    load_models,
    model_from_checkpoint,
    rebuild_network,
    register_network,
)
from packd.plugins import PLUGINS_VARIABLE, load_plugins
from packd.train import seed_everything

REPO = Path(__file__).resolve().parents[2]
SIZES = {
    "lstm": {"teacher": {"hidden": 12, "layers": 2}, "student": {"hidden": 4, "layers": 1}},
    "resnet": {
        "teacher": {"block": "bottleneck", "layers": [1, 1], "width": 4},
        "student": {"block": "basic", "layers": [1], "width": 2},
    },
}
REPLACEMENT = {"width": 0.5, "layers_per_block": 1}


def test_every_method_trains_a_registered_network_and_is_tuned_when_it_trains() -> None:
    for name, method in METHODS.items():
        assert method.network in NETWORKS, name
        assert method.tuned == NETWORKS[method.network].trains, name


@pytest.mark.parametrize("arch", sorted(SIZES))
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_a_saved_network_loads_from_its_header(network: str, arch: str, tmp_path: Path) -> None:
    """Each kind's header fields rebuild it: the loaded model scores as the saved one."""
    seed_everything(3)
    cell = NetworkCell(arch=arch, sizes=SIZES[arch], seed=3, replacement_size=REPLACEMENT)
    model, fields = build_network(network, cell, 2.0)
    header = checkpoint_header(model, fields.pop("arch"), fields.pop("size"), "x", "app", **fields)
    save_checkpoint(tmp_path / "model.pt", model.state_dict(), header)
    loaded, loaded_header = model_from_checkpoint(tmp_path / "model.pt")
    assert loaded_header == header
    inputs = torch.rand(5, 10, 10)
    with torch.no_grad():
        assert torch.equal(model.eval()(inputs), loaded(inputs))


def test_a_header_without_builder_is_a_plain_network() -> None:
    """Teachers, students and baselines were saved without a builder field."""
    header = {"arch": "lstm", "size": SIZES["lstm"]["student"], "role": "student", "app": "a"}
    assert isinstance(rebuild_network(header), LSTMPrefetcher)
    with pytest.raises(ValueError, match="unknown network builder 'nope'"):
        rebuild_network({**header, "builder": "nope"})


def test_an_empty_checkpoint_holds_no_model(tmp_path: Path) -> None:
    """A cluster merged away leaves an empty teacher: load_models skips it."""
    save_checkpoint(
        tmp_path / "c1.pt", {}, {**checkpoint_header(None, "lstm", {}, "t", "a"), "empty": True}
    )
    assert load_models([tmp_path / "c1.pt"]) == ({}, [])
    with pytest.raises(ValueError, match="empty"):
        model_from_checkpoint(tmp_path / "c1.pt")


def test_a_builder_that_rebuilds_differently_is_refused() -> None:
    student = NETWORKS["student"]
    with pytest.raises(ValueError, match="already registered"):
        register_network(student)
    other = Network(name="other", build=student.build, rebuild=lambda header: None)
    with pytest.raises(ValueError, match="builder 'model'"):
        register_network(other)
    assert "other" not in NETWORKS


def test_a_missing_plugin_is_named_with_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_VARIABLE, "tests.no_such_plugin")
    with pytest.raises(ModuleNotFoundError, match=PLUGINS_VARIABLE):
        load_plugins()


# The toy registers into this process's registries for good: it runs in a fresh interpreter.
TOY_ROUND_TRIP = """
import {first}
from packd.checkpoint import checkpoint_header, save_checkpoint
from packd.methods import METHODS, method_settings, trained_model_regex
from packd.networks import NETWORKS, NetworkCell, build_network, model_from_checkpoint

assert METHODS["toy"].network == "toy" and "toy" in NETWORKS
assert "toy" in trained_model_regex().split("|")
settings = method_settings("toy", {{"kd": {{}}}})
assert settings["network"] == "toy" and settings["soft_targets"] is None
sizes = {{"teacher": {{"hidden": 12, "layers": 2}}, "student": {{"hidden": 4, "layers": 1}}}}
model, fields = build_network("toy", NetworkCell(arch="lstm", sizes=sizes, seed=0))
header = checkpoint_header(model, fields.pop("arch"), fields.pop("size"), "student", "a", **fields)
save_checkpoint("toy.pt", model.state_dict(), header)
loaded, _ = model_from_checkpoint("toy.pt")
assert type(loaded).__name__ == "LowRankLinear"
"""


@pytest.mark.parametrize("first", ["packd.methods", "packd.networks", "tests.toy_method"])
def test_a_plugin_adds_a_method_and_a_network_whichever_is_imported_first(
    first: str, tmp_path: Path
) -> None:
    environment = {
        **os.environ,
        PLUGINS_VARIABLE: "tests.toy_method",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        ),
    }
    completed = subprocess.run(
        [sys.executable, "-c", TOY_ROUND_TRIP.format(first=first)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
