"""The method registry: names, settings, regexes and captions in one place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from packd.methods import (
    METHODS,
    evaluated_model_regex,
    method_of,
    method_rank,
    method_settings,
    names_in_folder,
    names_with_role,
    sweep_method_name,
    trained_model_regex,
)

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_sweep_method_names_round_trip() -> None:
    config = load("config.yaml")
    name = sweep_method_name("d", 4, 0.9, 5.0)
    assert name == "packd-d-k4-alpha0.9-T5"
    settings = method_settings(name, config)
    assert settings["soft_targets"] == "cluster_teachers"
    assert (settings["features"], settings["k"]) == ("d", 4)
    assert (settings["alpha"], settings["temperature"]) == (0.9, 5.0)
    assert method_settings("packd", config)["k"] == config["cluster"]["k"]
    assert method_settings("no_kd", config)["soft_targets"] is None
    with pytest.raises(ValueError, match="unknown method"):
        method_settings("packd-q-k2", config)


def test_every_distilled_method_names_its_kd_settings_in_the_config() -> None:
    config = load("config.yaml")
    for name, method in METHODS.items():
        settings = method_settings(name, config)
        assert method.loss == ("bce" if method.soft_targets is None else "kd")
        if method.soft_targets is not None:
            assert {"alpha", "temperature"} <= set(settings), name


def test_regexes_match_exactly_the_registry_and_sweeps() -> None:
    trained = re.compile(f"^(?:{trained_model_regex()})$")
    evaluated = re.compile(f"^(?:{evaluated_model_regex()})$")
    for name in METHODS:
        assert evaluated.match(name)
        # The student rule trains exactly the models whose checkpoints live in results/students.
        assert bool(trained.match(name)) == (name in names_in_folder("students"))
    for name in names_with_role("teacher", "routed_teachers"):
        assert evaluated.match(name) and not trained.match(name)
    sweep = sweep_method_name("a", 3, 0.5, 1.0)
    assert trained.match(sweep) and method_of(sweep) is METHODS["packd"]
    for bad in ("packd_x", "teacher2", "packd-a-k3"):
        assert not evaluated.match(bad)


def test_order_labels_and_colours_are_distinct() -> None:
    assert [method_rank(name) for name in METHODS] == list(range(len(METHODS)))
    assert method_rank("packd-a-k2-alpha0.5-T1") == len(METHODS)
    assert len({method.color for method in METHODS.values()}) == len(METHODS)
    assert len({method.label for method in METHODS.values()}) == len(METHODS)


def test_a_no_kd_student_at_the_blockwise_students_size() -> None:
    from packd.methods import FRONTIER_METHOD, frontier_method_name, method_settings

    name = frontier_method_name("no_kd", "blockwise")
    assert name == "no_kd-xblockwise" and FRONTIER_METHOD.match(name)["base"] == "no_kd"
    settings = method_settings(name, {"blockwise": {"width": 0.25}, "kd": {}})
    assert settings["budget_of"] == "blockwise" and settings["blockwise"] == {"width": 0.25}
    assert settings["method"] == "no_kd" and settings["soft_targets"] is None


def test_the_blockwise_budget_factor_is_the_blockwise_students_count_over_the_students() -> None:
    from packd.blockwise import blockwise_parameter_counts
    from packd.models import build_model, count_parameters
    from packd.stages.training import budget_factor_of, build_network

    sizes = {
        "teacher": {"block": "bottleneck", "layers": [1, 1], "width": 8},
        "student": {"block": "basic", "layers": [1], "width": 4},
    }
    settings = {"budget_of": "blockwise", "blockwise": {"width": 0.5}}
    factor = budget_factor_of(settings, "resnet", sizes)
    counts = blockwise_parameter_counts(
        "resnet", sizes["teacher"], {"width": 0.5, "layers_per_block": 1}
    )
    student = count_parameters(build_model("resnet", sizes["student"]))
    assert factor == pytest.approx(counts["student"] / student)
    model, _ = build_network("student", "resnet", sizes, 1, factor)
    assert abs(count_parameters(model) - counts["student"]) <= 0.25 * counts["student"]
