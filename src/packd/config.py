"""Checks across config keys that a JSON schema cannot express, and student method names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SWEEP_METHOD = re.compile(
    r"^packd-(?P<features>[adi])-k(?P<k>\d+)-alpha(?P<alpha>[0-9.]+)-T(?P<temperature>[0-9.]+)$"
)


class ConfigError(ValueError):
    """A config value that is well-typed but impossible; the message names the key."""


def check_config(config: Mapping[str, Any], base_dir: Path | None = None) -> None:
    """Raise ConfigError naming the key when config values contradict each other."""
    split = config["dataset"]["split"]
    if split["warmup"] + split["train"] >= 1:
        raise ConfigError(
            f"dataset.split: warmup ({split['warmup']}) + train ({split['train']}) must be "
            "below 1, leaving a test part"
        )
    for arch in config["archs"]:
        if arch not in config["models"]:
            raise ConfigError(f"models.{arch}: sizes missing for an arch listed in archs")
    line_bytes = config["cache"].get("line_bytes", 64)
    for index, level in enumerate(config["cache"]["levels"]):
        sets, remainder = divmod(level["size_kib"] * 1024, level["ways"] * line_bytes)
        if remainder or sets & (sets - 1):
            raise ConfigError(
                f"cache.levels[{index}] ({level['name']}): {level['size_kib']} KiB / "
                f"{level['ways']} ways / {line_bytes} B lines is not a power-of-two number of sets"
            )
    base_dir = base_dir or Path.cwd()
    for name, source in config["apps"].items():
        if "import" in source and not (base_dir / source["import"]).is_file():
            raise ConfigError(f"apps.{name}.import: no such file: {source['import']}")
    if config["cluster"]["k"] < 1:
        raise ConfigError("cluster.k must be at least 1")


def sweep_method_name(features: str, k: int, alpha: float, temperature: float) -> str:
    """The student method name that encodes one PaCKD setting, e.g. packd-a-k3-alpha0.5-T1."""
    return f"packd-{features}-k{int(k)}-alpha{float(alpha):g}-T{float(temperature):g}"


def method_settings(method: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Kind (packd, standard_kd, no_kd), features, k, alpha and temperature of a student method."""
    if method == "packd":
        return {
            "kind": "packd",
            "features": config["cluster"]["features"],
            "k": int(config["cluster"]["k"]),
            **config["kd"]["packd"],
        }
    if method == "standard_kd":
        return {"kind": "standard_kd", **config["kd"]["standard_kd"]}
    if method == "no_kd":
        return {"kind": "no_kd", "alpha": 1.0, "temperature": 1.0}
    match = SWEEP_METHOD.match(method)
    if match is None:
        raise ConfigError(f"unknown student method {method!r}")
    return {
        "kind": "packd",
        "features": match["features"],
        "k": int(match["k"]),
        "alpha": float(match["alpha"]),
        "temperature": float(match["temperature"]),
    }
