"""benchmarks_scripts/teacher_budget.py: earlier recipes applied to the run's data and config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from packd.config import validate_config
from packd.dataset import load_split, save_split
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks_scripts/teacher_budget.py"


def _load_script():
    return load_script(SCRIPT, "teacher_budget_bench")


def _config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    return config


def test_a_recipe_overrides_its_phases_and_leaves_the_run_config_alone() -> None:
    bench = _load_script()
    config = _config()
    before = yaml.safe_dump(config["train"])
    for name, recipe in bench.EARLIER_RECIPES.items():
        train = bench.recipe_train_config(config["train"], recipe["phases"])
        for phase, settings in recipe["phases"].items():
            assert {key: train[phase][key] for key in settings} == settings, name
        # the rest of the phase (its rate, batch size) is the run's
        assert train["teacher"]["lr"] == config["train"]["teacher"]["lr"]
    assert yaml.safe_dump(config["train"]) == before


def test_recipe_data_subsamples_larger_splits_and_keeps_smaller_ones_whole(tmp_path) -> None:
    bench = _load_script()
    rng = np.random.default_rng(0)
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    for split, n in (("train", 50), ("val", 10), ("test", 10)):
        save_split(
            datasets / f"{split}.npz",
            {"inputs": rng.normal(size=(n, 4)), "labels": rng.random((n, 16)) < 0.2},
        )
    small = bench.recipe_data(datasets, tmp_path / "scratch", 20, seed=1)
    assert len(load_split(small["train"])["labels"]) == 20
    assert small["val"] == datasets / "val.npz"
    whole = bench.recipe_data(datasets, tmp_path / "scratch", 80, seed=1)
    kept = load_split(whole["train"])
    assert np.array_equal(kept["inputs"], load_split(datasets / "train.npz")["inputs"])


def test_the_page_note_states_the_run_recipe_from_its_config() -> None:
    bench = _load_script()
    config = _config()
    config["dataset"]["max_samples"]["train"] = 12345
    config["train"]["teacher"]["epochs"] = 7
    note = bench.page_note(config, {"bc": 12345, "sssp": 999})
    assert "up to 12345 training samples; teacher 7 and student" in note
    assert "kept: bc 12345, sssp 999" in note
    for recipe in bench.EARLIER_RECIPES.values():
        assert f"{recipe['samples']} training samples" in note
