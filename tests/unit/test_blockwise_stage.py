"""The blockwise stage functions (one per rule) on a tiny synthetic dataset and tiny teachers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from packd.blockwise import block_activations, replacement_blocks, teacher_blocks
from packd.cell import Cell
from packd.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from packd.config import ConfigError, with_schema_defaults
from packd.dataset import save_split
from packd.kd_settings import KDSettings
from packd.methods import method_settings
from packd.models import build_model, count_parameters
from packd.networks import model_from_checkpoint
from packd.plan import (
    block_count,
    block_output_sizes,
    block_priorities,
)
from packd.stages.blockwise import (
    AssemblySettings,
    assemble_blockwise,
    boundary_path,
    distill_block,
    distill_blocks_sequentially,
    load_boundary,
    relative_mse,
    save_teacher_block_activations,
    subsample_rows,
)
from packd.stages.training import student_training_data
from tests.conftest import SCHEMA

TEACHER_SIZE = {"dim": 16, "depth": 2}
REPLACEMENT_SIZE = {"width": 0.5, "layers_per_block": 1}
BLOCK_TRAINING = {"epochs": 2, "lr": 0.01, "batch_size": 64}
# Config sections as the rules pass them: the schema's defaults filled in
TRAIN = with_schema_defaults(
    "train",
    {
        "device": "cpu",
        "amp": False,
        "teacher": {"epochs": 1, "lr": 0.01, "batch_size": 64, "patience": 1},
        "student": {"epochs": 3, "lr": 0.01, "batch_size": 64, "patience": 3},
    },
    SCHEMA,
)
KD = {"packd": {"alpha": 0.5, "temperature": 2.0}, "authors": {"alpha": 0.5, "temperature": 5.0}}
CONFIG = {"cluster": {"features": "a", "k": 2}, "kd": with_schema_defaults("kd", KD, SCHEMA)}
SPLIT_SIZES = {"train": 300, "val": 120, "test": 100}
BLOCK_CELL = Cell(seed=3, app="syn", arch="mixer")  # the block jobs' cell


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Splits whose labels follow the inputs, two clusters, a whole-app and two cluster teachers
    (untrained: the stages only need their structure and a forward pass)."""
    root = tmp_path_factory.mktemp("blockwise_stage")
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(100, 256))
    paths: dict[str, Path] = {}
    cluster_rows = []
    for name, n in SPLIT_SIZES.items():
        inputs = rng.random((n, 10, 10), dtype=np.float32)
        labels = inputs.reshape(n, 100) @ mixing > 1.0
        paths[name] = root / f"{name}.npz"
        save_split(paths[name], {"inputs": inputs, "labels": labels})
        clusters = (inputs[:, -1, 0] > 0.5).astype(np.int64)
        cluster_rows.append(
            pd.DataFrame({"split": name, "sample": np.arange(n), "cluster": clusters})
        )
    paths["clusters"] = root / "a-k2.parquet"
    pd.concat(cluster_rows).to_parquet(paths["clusters"])
    for name, fields in (("all", {}), ("c0", {"cluster": 0}), ("c1", {"cluster": 1})):
        torch.manual_seed(len(name) + len(fields))
        model = build_model("mixer", TEACHER_SIZE)
        paths[name] = root / f"{name}.pt"
        header = checkpoint_header(model, "mixer", TEACHER_SIZE, "teacher", "syn", **fields)
        save_checkpoint(paths[name], model.state_dict(), header)
    return paths


@pytest.fixture(scope="module")
def activations(app: dict[str, Path]) -> Path:
    activations_dir = app["all"].parent / "activations"
    blocks = save_teacher_block_activations(
        app["all"],
        app,
        Cell(seed=5, app="syn", arch="mixer"),
        1,
        {"train": 200, "val": None},
        activations_dir=activations_dir,
        device="cpu",
    )
    assert blocks == 2
    return activations_dir


@pytest.fixture(scope="module")
def block_paths(app: dict[str, Path], activations: Path) -> list[Path]:
    paths = []
    for index in range(2):
        paths.append(activations.parent / f"block{index}.pt")
        distill_block(
            activations, app["all"], BLOCK_CELL, index, REPLACEMENT_SIZE, BLOCK_TRAINING,
            paths[-1], device="cpu",
        )  # fmt: skip
    return paths


@pytest.mark.parametrize(
    ("arch", "size", "layers_per_block"),
    [
        ("lstm", {"hidden": 8, "layers": 1}, 1),
        ("lstm", {"hidden": 8, "layers": 3}, 2),
        ("mixer", {"dim": 8, "depth": 6}, 3),
        ("mixer", {"dim": 8, "depth": 5}, 2),
        ("resnet", {"block": "bottleneck", "layers": [1, 2, 1], "width": 4}, 1),
        ("resnet", {"block": "basic", "layers": [2], "width": 4}, 1),
    ],
)
def test_block_count_matches_the_cut_teacher(arch: str, size: dict, layers_per_block: int) -> None:
    split = teacher_blocks(build_model(arch, size), arch, layers_per_block)
    assert block_count(arch, size, layers_per_block) == len(split.blocks)
    boundaries = block_activations(split, torch.rand(2, 10, 10))
    outputs = [int(np.prod(boundary.shape[1:])) for boundary in boundaries[1:]]
    assert block_output_sizes(arch, size, layers_per_block) == outputs


def test_block_priorities_start_the_largest_resnet_stage_first() -> None:
    size = {"block": "bottleneck", "layers": [1, 1, 1, 1], "width": 8}
    # Outputs 32x10x10, 64x5x5, 128x3x3, 256x2x2: 3200 > 1600 > 1152 > 1024
    assert block_output_sizes("resnet", size, 1) == [3200, 1600, 1152, 1024]
    assert block_priorities("resnet", size, 1) == [3, 2, 1, 0]
    assert block_priorities("lstm", {"hidden": 8, "layers": 2}, 1) == [0, 0]


def test_block_count_refuses_grouped_resnet_stages() -> None:
    with pytest.raises(ValueError, match="stages"):
        block_count("resnet", {"block": "basic", "layers": [1, 1], "width": 4}, 2)


def test_blockwise_settings_left_out_take_the_schemas_defaults() -> None:
    settings = with_schema_defaults(
        "blockwise", {"width": 0.5, "layers_per_block": {"mixer": 2}}, SCHEMA
    )
    assert settings["width"] == 0.5
    assert settings["layers_per_block"] == {"lstm": 1, "mixer": 2, "resnet": 1}
    assert settings["block"] == {"epochs": 5, "lr": 0.005, "batch_size": 256}
    assert settings["fine_tune"] == {"epochs": None}
    assert with_schema_defaults("blockwise", {}, SCHEMA)["max_samples"] == {
        "train": 20000,
        "val": 5000,
    }
    with pytest.raises(ConfigError, match="widht"):
        with_schema_defaults("blockwise", {"widht": 0.5}, SCHEMA)


def test_subsample_is_seeded_sorted_and_unique() -> None:
    rows = subsample_rows(1000, 100, seed=4)
    assert len(np.unique(rows)) == 100 and (np.diff(rows) > 0).all()
    assert np.array_equal(rows, subsample_rows(1000, 100, seed=4))
    assert not np.array_equal(rows, subsample_rows(1000, 100, seed=5))
    assert np.array_equal(subsample_rows(50, 100, seed=4), np.arange(50))
    assert np.array_equal(subsample_rows(50, None, seed=4), np.arange(50))


def test_activations_are_the_teachers_on_the_subsample(
    app: dict[str, Path], activations: Path
) -> None:
    boundaries = [load_boundary(activations, index) for index in range(3)]
    assert not boundary_path(activations, 3).exists()
    assert all(boundary["train"].dtype == np.float16 for boundary in boundaries)
    assert boundaries[0]["train"].shape[0] == 200
    assert boundaries[0]["val"].shape[0] == SPLIT_SIZES["val"]  # max_samples None: all rows
    teacher, _ = model_from_checkpoint(app["all"])
    inputs = np.load(app["train"])["inputs"][subsample_rows(SPLIT_SIZES["train"], 200, seed=5)]
    expected = block_activations(teacher_blocks(teacher, "mixer", 1), inputs)
    for boundary, reference in zip(boundaries, expected, strict=True):
        np.testing.assert_allclose(boundary["train"], reference, rtol=2e-3, atol=2e-3)


def test_block_jobs_learn_and_save_loadable_checkpoints(
    app: dict[str, Path], activations: Path, block_paths: list[Path]
) -> None:
    teacher, _ = model_from_checkpoint(app["all"])
    fresh = replacement_blocks(teacher_blocks(teacher, "mixer", 1), "mixer", REPLACEMENT_SIZE, 3)
    for index, path in enumerate(block_paths):
        header, state = load_checkpoint(path)  # weights_only
        assert header["block"] == index and header["role"] == "replacement_block"
        assert header["size"]["replacement_size"] == REPLACEMENT_SIZE
        assert header["history"][-1]["mse"] < header["history"][0]["mse"]
        block_inputs, block_targets = (
            load_boundary(activations, index)["val"],
            load_boundary(activations, index + 1)["val"],
        )
        untrained = relative_mse(fresh[index], block_inputs, block_targets)
        assert header["val_relative_mse"] < 0.8 * untrained
        fresh[index].load_state_dict(state)
        assert relative_mse(fresh[index], block_inputs, block_targets) == pytest.approx(
            header["val_relative_mse"]
        )


def test_sequential_baseline_trains_the_same_blocks(
    app: dict[str, Path], activations: Path, block_paths: list[Path]
) -> None:
    paths = distill_blocks_sequentially(
        activations, app["all"], BLOCK_CELL, REPLACEMENT_SIZE, BLOCK_TRAINING,
        activations.parent / "sequential", device="cpu",
    )  # fmt: skip
    assert [path.name for path in paths] == ["block0.pt", "block1.pt"]
    for sequential, parallel in zip(paths, block_paths, strict=True):
        sequential_state, parallel_state = (
            load_checkpoint(sequential)[1],
            load_checkpoint(parallel)[1],
        )
        assert sequential_state.keys() == parallel_state.keys()
        for name, tensor in sequential_state.items():
            torch.testing.assert_close(tensor, parallel_state[name], msg=name)


@pytest.mark.parametrize("method", ["blockwise", "blockwise_packd"])
def test_assembled_student_is_fine_tuned_and_rebuilt_from_its_checkpoint(
    app: dict[str, Path], block_paths: list[Path], method: str
) -> None:
    settings = method_settings(method, CONFIG)
    path = app["all"].parent / f"{method}.pt"
    distilled = settings["soft_targets"] is not None
    assembly = AssemblySettings(
        method=method, method_settings=settings, replacement_size=REPLACEMENT_SIZE,
        train_config=TRAIN, fine_tune_epochs=2,
    )  # fmt: skip
    assemble_blockwise(
        Cell(seed=1, app="syn", arch="mixer"), assembly, app["all"], block_paths, app, path,
        teacher_paths=[app["c0"], app["c1"]] if distilled else [],
        clusters_path=app["clusters"] if distilled else None,
    )  # fmt: skip
    student, header = model_from_checkpoint(path)
    teacher, _ = model_from_checkpoint(app["all"])
    assert header["builder"] == "blockwise" and header["method"] == method
    assert header["role"] == "student" and len(header["history"]) <= 2
    assert header["params"] == count_parameters(student) < count_parameters(teacher)
    inputs = torch.rand(4, 10, 10)
    assert student(inputs).shape == (4, 256)
    stored = load_checkpoint(path)[1]
    for name, tensor in student.state_dict().items():
        torch.testing.assert_close(tensor, stored[name])


def test_soft_targets_come_from_each_samples_cluster_teacher(app: dict[str, Path]) -> None:
    inputs = np.load(app["train"])["inputs"]
    labels = np.zeros((len(inputs), 256), dtype=bool)
    settings = method_settings("blockwise_packd", CONFIG)
    (_, _, soft_logits), kd = student_training_data(
        inputs, labels, settings, [app["c0"], app["c1"]], app["clusters"], "cpu"
    )
    assert kd == KDSettings(alpha=0.5, temperature=2.0, scale_soft_by_t2=True)
    routes = (inputs[:, -1, 0] > 0.5).astype(np.int64)
    for cluster in (0, 1):
        teacher, _ = model_from_checkpoint(app[f"c{cluster}"])
        rows = routes == cluster
        with torch.inference_mode():
            expected = teacher(torch.as_tensor(inputs[rows]))
        torch.testing.assert_close(soft_logits[rows], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="without a teacher"):
        student_training_data(inputs, labels, settings, [app["c0"]], app["clusters"], "cpu")
    assert (
        student_training_data(
            inputs, labels, method_settings("blockwise", CONFIG), [], None, "cpu"
        )[1]
        is None
    )
