"""Config validation: the schema and the cross-key checks stop a bad config, naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from packd.config import ConfigError, check_config, method_settings, sweep_method_name
from tests.conftest import REPO

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize(
    "name",
    [
        "config.yaml",
        "config/paper.yaml",
        "tests/configs/tiny.yaml",
        "tests/configs/tiny_traces.yaml",
    ],
)
def test_shipped_configs_are_valid(name: str) -> None:
    config = load(name)
    validate(config, schema=SCHEMA)
    check_config(config, base_dir=REPO)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c.update(colour="blue"), "colour"),
        (lambda c: c["train"]["teacher"].update(epochs="ten"), "ten"),
        (lambda c: c["train"]["teacher"].update(epochs=0), "epochs"),
        (lambda c: c["cluster"].update(features="x"), "x"),
        (lambda c: c["apps"]["bc"].update(kernel="dfs"), "bc"),
        (lambda c: c["apps"]["bc"].update(scale=40), "bc"),
        (lambda c: c["kd"]["packd"].update(alpha=1.5), "alpha"),
        (lambda c: c["tracing"].update(backend="pin"), "pin"),
        (lambda c: c["dataset"]["split"].update(val=0), "val"),
        (lambda c: c.update(archs=["lstm", "transformer"]), "transformer"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "zero-epochs",
        "bad-features",
        "bad-kernel",
        "huge-scale",
        "alpha-above-1",
        "bad-backend",
        "zero-val",
        "unknown-arch",
    ],
)
def test_schema_rejects_bad_values(change, named: str) -> None:
    config = copy.deepcopy(load("config.yaml"))
    change(config)
    with pytest.raises(WorkflowError) as error:
        validate(config, schema=SCHEMA)
    assert named in str(error.value)


def test_split_must_leave_a_test_part() -> None:
    config = load("config.yaml")
    config["dataset"]["split"].update(warmup=0.3, train=0.7)
    with pytest.raises(ConfigError, match="dataset.split"):
        check_config(config, base_dir=REPO)


def test_cache_level_must_have_power_of_two_sets() -> None:
    config = load("config.yaml")
    config["cache"]["levels"][1]["size_kib"] = 500
    with pytest.raises(ConfigError, match=r"cache.levels\[1\] \(L2\)"):
        check_config(config, base_dir=REPO)


def test_missing_import_file_is_named(tmp_path: Path) -> None:
    config = load("config.yaml")
    config["apps"]["mine"] = {"import": "traces/mine.txt.xz"}
    validate(config, schema=SCHEMA)
    with pytest.raises(ConfigError, match=r"apps.mine.import: no such file: traces/mine.txt.xz"):
        check_config(config, base_dir=tmp_path)


def test_arch_without_sizes_is_named() -> None:
    config = load("config.yaml")
    del config["models"]["mixer"]
    with pytest.raises(ConfigError, match="models.mixer"):
        check_config(config, base_dir=REPO)


def test_sweep_method_names_round_trip() -> None:
    config = load("config.yaml")
    name = sweep_method_name("d", 4, 0.9, 5.0)
    assert name == "packd-d-k4-alpha0.9-T5"
    assert method_settings(name, config) == {
        "kind": "packd",
        "features": "d",
        "k": 4,
        "alpha": 0.9,
        "temperature": 5.0,
    }
    assert method_settings("packd", config)["k"] == config["cluster"]["k"]
    assert method_settings("no_kd", config)["alpha"] == 1.0
    with pytest.raises(ConfigError, match="unknown student method"):
        method_settings("packd-q-k2", config)
