"""The method registry: names, settings, regexes and captions in one place."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from packd.config import validate_config
from packd.kd_settings import KDSettings
from packd.methods import (
    BLOCKWISE_SIZE,
    FRONTIER_BASES,
    METHODS,
    BudgetVariant,
    SweepVariant,
    evaluated_model_regex,
    method_of,
    method_rank,
    method_settings,
    names_in_folder,
    names_with_role,
    register_method,
    settings_record,
    trained_model_regex,
    variant_of,
)
from tests.conftest import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def validated(name: str) -> dict:
    """A config file as the rules see it: checked, the schema's defaults filled in."""
    config = load(name)
    validate_config(config, SCHEMA, ROOT)
    return config


def test_sweep_variants_round_trip_through_their_names() -> None:
    config = validated("config.yaml")
    variant = SweepVariant("d", 4, 0.9, 5)
    assert variant.name == "packd-d-k4-alpha0.9-T5"
    assert variant_of(variant.name) == variant
    # The fields are what the name spells, so that the variant read back from it is equal
    assert SweepVariant("a", 3, 1 / 3, 1.0) == variant_of(SweepVariant("a", 3, 1 / 3, 1.0).name)
    settings = method_settings(variant.name, config)
    assert settings["soft_targets"] == "cluster_teachers"
    assert (settings["features"], settings["k"]) == ("d", 4)
    scale = config["kd"]["scale_soft_by_t2"]
    assert settings["kd"] == KDSettings(alpha=0.9, temperature=5.0, scale_soft_by_t2=scale)
    assert method_settings("packd", config)["k"] == config["cluster"]["k"]
    assert method_settings("no_kd", config)["soft_targets"] is None
    with pytest.raises(ValueError, match="unknown method"):
        method_settings("packd-q-k2", config)
    assert variant_of("packd") is None and variant_of("packd-a-k1-alpha0.5.1-T1") is None


def test_budget_variants_round_trip_through_their_names() -> None:
    for variant, name in [
        (BudgetVariant("no_kd", 4), "no_kd-x4"),
        (BudgetVariant("roast", 0.5), "roast-x0.5"),
        (BudgetVariant("no_kd", BLOCKWISE_SIZE), "no_kd-xblockwise"),
    ]:
        assert variant.name == name and variant_of(name) == variant
        assert method_of(name) is METHODS[variant.base]
    # At factor 1 a budget variant is the method itself
    assert BudgetVariant("packd", 1).name == "packd" and variant_of("packd") is None
    config = validated("config.yaml")
    assert method_settings("packd-x16", config)["budget_factor"] == 16.0


def test_every_distilled_method_names_its_kd_settings_in_the_config() -> None:
    config = validated("config.yaml")
    for name, method in METHODS.items():
        settings = method_settings(name, config)
        assert method.loss == ("bce" if method.soft_targets is None else "kd")
        if method.soft_targets is None:
            assert settings["kd"] is None, name
        else:
            assert settings["kd"] == KDSettings.from_config(config["kd"], method.kd_settings)
            assert settings_record(settings)["kd"] == dataclasses.asdict(settings["kd"])


def test_regexes_match_exactly_the_registry_and_sweeps() -> None:
    trained = re.compile(f"^(?:{trained_model_regex()})$")
    evaluated = re.compile(f"^(?:{evaluated_model_regex()})$")
    for name in METHODS:
        assert evaluated.match(name)
        # The student rule trains exactly the models whose checkpoints live in results/students.
        assert bool(trained.match(name)) == (name in names_in_folder("students"))
    for name in names_with_role("teacher", "routed_teachers"):
        assert evaluated.match(name) and not trained.match(name)
    sweep = SweepVariant("a", 3, 0.5, 1.0).name
    assert trained.match(sweep) and method_of(sweep) is METHODS["packd"]
    assert trained.match("no_kd-x4") and trained.match("no_kd-xblockwise")
    for bad in ("packd_x", "teacher2", "packd-a-k3"):
        assert not evaluated.match(bad)


def test_order_labels_and_colours_are_distinct() -> None:
    assert [method_rank(name) for name in METHODS] == list(range(len(METHODS)))
    assert method_rank("packd-a-k2-alpha0.5-T1") == len(METHODS)
    assert len({method.color for method in METHODS.values()}) == len(METHODS)
    assert len({method.label for method in METHODS.values()}) == len(METHODS)


def test_a_no_kd_student_at_the_blockwise_students_size() -> None:
    config = validated("tests/configs/tiny.yaml")
    settings = method_settings(BudgetVariant("no_kd", BLOCKWISE_SIZE).name, config)
    assert settings["budget_of"] == "blockwise" and settings["blockwise"] == config["blockwise"]
    assert settings["method"] == "no_kd" and settings["soft_targets"] is None


def test_the_blockwise_budget_factor_is_the_blockwise_students_count_over_the_students() -> None:
    from packd.blockwise import blockwise_parameter_counts
    from packd.models import build_model, count_parameters
    from packd.networks import NetworkCell, build_network
    from packd.stages.training import budget_factor_of

    sizes = {
        "teacher": {"block": "bottleneck", "layers": [1, 1], "width": 8},
        "student": {"block": "basic", "layers": [1], "width": 4},
    }
    settings = {
        "budget_of": "blockwise",
        "blockwise": {"width": 0.5, "layers_per_block": {"resnet": 1}},
    }
    cell = NetworkCell(arch="resnet", sizes=sizes, seed=1)
    factor = budget_factor_of(settings, cell)
    counts = blockwise_parameter_counts(
        "resnet", sizes["teacher"], {"width": 0.5, "layers_per_block": 1}
    )
    student = count_parameters(build_model("resnet", sizes["student"]))
    assert factor == pytest.approx(counts["student"] / student)
    model, _ = build_network("student", cell, factor)
    assert abs(count_parameters(model) - counts["student"]) <= 0.25 * counts["student"]


def test_config_yamls_main_table_is_the_registrys() -> None:
    main_table = [name for name, method in METHODS.items() if method.main_table]
    assert load("config.yaml")["methods"] == main_table


def test_the_schemas_frontier_methods_are_the_registrys() -> None:
    schema = load("workflow/schemas/config.schema.yaml")
    methods = schema["properties"]["frontier"]["properties"]["methods"]
    assert methods["items"]["enum"] == list(FRONTIER_BASES)
    assert methods["default"] == list(FRONTIER_BASES)


def test_a_taken_name_or_a_frontier_method_cannot_be_registered() -> None:
    packd = METHODS["packd"]
    for name in ("packd", SweepVariant("a", 2, 0.5, 1.0).name, "no_kd-x4"):
        with pytest.raises(ValueError, match="is taken"):
            register_method(dataclasses.replace(packd, name=name))
    with pytest.raises(ValueError, match="frontier"):
        register_method(dataclasses.replace(packd, name="packd_again", frontier=True))
    assert "packd_again" not in METHODS
