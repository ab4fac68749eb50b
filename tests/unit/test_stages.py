"""The stage functions (one per rule) on a tiny synthetic trace, without Snakemake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from packd.cell import Cell
from packd.checkpoint import load_checkpoint
from packd.clustering import load_cluster_ids
from packd.config import with_schema_defaults
from packd.dataset import load_split
from packd.methods import method_settings
from packd.networks import load_models
from packd.stages.data import build_dataset, cluster
from packd.stages.evaluation import evaluate, model_probabilities
from packd.stages.training import (
    cluster_teacher_phase,
    select_candidate,
    train_student,
    train_teacher,
)
from packd.trace_io import write_trace_parquet
from packd.train import PhaseSettings
from tests.conftest import SCHEMA

TINY_SIZES = {"teacher": {"hidden": 16, "layers": 1}, "student": {"hidden": 4, "layers": 1}}
CELL = Cell(seed=1, app="syn", arch="lstm")
# Config sections as the rules pass them: the schema's defaults filled in
TRAIN = with_schema_defaults(
    "train",
    {
        "device": "cpu",
        "amp": False,
        "teacher": {"epochs": 2, "lr": 0.01, "batch_size": 128, "patience": 2},
        "student": {"epochs": 2, "lr": 0.01, "batch_size": 128, "patience": 2},
        "cluster_teachers": {"init": "warm_start", "epochs": 2, "lr_factor": 0.5},
    },
    SCHEMA,
)
CONFIG = {
    "cluster": {"features": "a", "k": 2},
    "kd": with_schema_defaults(
        "kd",
        {
            "packd": {"alpha": 0.5, "temperature": 1.0},
            "authors": {"alpha": 0.5, "temperature": 5.0},
        },
        SCHEMA,
    ),
}


def dataset_section(**values: object) -> dict:
    """A dataset section as the rules pass it: the schema's defaults filled in."""
    return with_schema_defaults("dataset", values, SCHEMA)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-phase strided trace, its dataset, clusters, a whole-app and two cluster teachers."""
    root = tmp_path_factory.mktemp("stages")
    rng = np.random.default_rng(0)
    n = 3000
    strides = np.where(np.arange(n) % 600 < 300, 1, 3)  # two phases, so clusters differ
    blocks = 10_000 + np.cumsum(strides) + rng.integers(0, 2, n)
    trace = pd.DataFrame(
        {
            "instr_id": np.arange(n) * 7 + 1,
            "cycle": np.arange(n) * 20,
            "addr": blocks << 6,
            "pc": 0x400000 + (strides == 3) * 16,
            "llc_hit": rng.random(n) < 0.3,
        }
    )
    paths = {"trace": root / "trace.parquet"}
    write_trace_parquet(trace, paths["trace"], {"source": "synthetic"})
    splits = {name: root / f"{name}.npz" for name in ("train", "val", "test")}
    dataset = dataset_section(
        history=10,
        look_forward=16,
        delta_bound=128,
        split={"warmup": 0.05, "train": 0.7, "val": 0.2, "val_blocks": 2},
        max_samples={"train": 1500},
    )
    sizes = build_dataset(paths["trace"], dataset, splits, root / "sizes.json", seed=3)
    assert sizes["train"] == 1500 and sizes["val"] > 0 and sizes["test"] > 0
    paths.update(splits)
    paths["clusters"] = root / "a-k2.parquet"
    centroids = root / "a-k2.centroids.json"
    cluster(
        splits, "a", 2, 0, 2, 0.01, paths["clusters"], centroids, root / "sizes.csv", root / "c.png"
    )
    paths["teacher"] = root / "all.pt"
    train_teacher(CELL, splits, TINY_SIZES["teacher"], TRAIN, paths["teacher"])
    for c in range(2):
        paths[f"c{c}"] = root / f"c{c}.pt"
        train_teacher(
            CELL, splits, TINY_SIZES["teacher"], TRAIN, paths[f"c{c}"],
            clusters_path=paths["clusters"], cluster_id=c, whole_app_teacher_path=paths["teacher"],
        )  # fmt: skip
    return paths


def splits_of(app: dict[str, Path]) -> dict[str, Path]:
    return {name: app[name] for name in ("train", "val", "test")}


def test_build_dataset_subsamples_with_the_seed(app: dict[str, Path], tmp_path: Path) -> None:
    again = {name: tmp_path / f"{name}.npz" for name in ("train", "val", "test")}
    dataset = dataset_section(
        history=10,
        look_forward=16,
        delta_bound=128,
        split={"warmup": 0.05, "train": 0.7, "val": 0.2, "val_blocks": 2},
        max_samples={"train": 1500},
    )
    build_dataset(app["trace"], dataset, again, tmp_path / "sizes.json", seed=3)
    first, second = load_split(app["train"]), load_split(again["train"])
    np.testing.assert_array_equal(first["instr_id"], second["instr_id"])
    assert (np.diff(first["instr_id"].astype(np.int64)) > 0).all()  # kept in trace order
    build_dataset(app["trace"], dataset, again, tmp_path / "sizes.json", seed=4)
    assert not np.array_equal(first["instr_id"], load_split(again["train"])["instr_id"])


def test_cluster_assigns_every_sample_of_every_split(app: dict[str, Path]) -> None:
    cluster_ids = load_cluster_ids(app["clusters"])
    for name in ("train", "val", "test"):
        assert len(cluster_ids[name]) == len(load_split(app[name])["labels"])
    assert set(np.unique(cluster_ids["train"])) == {0, 1}


def test_cluster_teachers_train_on_their_own_samples(app: dict[str, Path]) -> None:
    sizes = [load_checkpoint(app[f"c{c}"])[0]["train_samples"] for c in range(2)]
    whole = load_checkpoint(app["teacher"])[0]
    assert sum(sizes) == whole["train_samples"] == 1500
    assert whole["role"] == "teacher" and whole["params"] > 0 and whole["history"]


@pytest.mark.parametrize(
    "method", ["packd", "standard_kd", "no_kd", "frequency", "mlp", "roast_packd", "hashednet"]
)
def test_train_student_and_evaluate(app: dict[str, Path], tmp_path: Path, method: str) -> None:
    settings = method_settings(method, CONFIG)
    teachers = {
        "cluster_teachers": [app["c0"], app["c1"]],
        "whole_app_teacher": [app["teacher"]],
        None: [],
    }[settings["soft_targets"]]
    checkpoint = tmp_path / f"{method}.pt"
    train_student(
        CELL, splits_of(app), TINY_SIZES, settings, TRAIN, checkpoint, method,
        teacher_paths=teachers, clusters_path=app["clusters"],
    )  # fmt: skip
    header, _ = load_checkpoint(checkpoint)
    assert header["method"] == method and header["role"] == "student"
    teacher_params = load_checkpoint(app["teacher"])[0]["params"]
    if method == "mlp":
        assert abs(header["params"] - teacher_params) <= 357  # one hidden unit's parameters
    else:
        assert header["params"] < teacher_params
    out = tmp_path / f"{method}.json"
    metrics = evaluate(
        CELL, splits_of(app), [checkpoint], out, method,
        latency_repeats=2, device_name="cpu", degree=2,
    )  # fmt: skip
    assert json.loads(out.read_text())["f1"] == pytest.approx(metrics["f1"])
    assert metrics["test_selected_f1"] >= metrics["f1"] - 1e-12
    if header["history"]:  # the authors' protocol picks the epoch on test too
        best = max(header["history"], key=lambda record: record["test_f1_best_threshold"])
        assert metrics["test_selected_epoch"] == best["epoch"]
        assert metrics["test_selected_recall"] == best["test_recall_best_threshold"]
    assert 0 < metrics["average_precision"] <= 1
    # The learnability check: how many test samples' top-2 bits are not the training labels'
    # two most frequent; the frequency baseline issues exactly those bits for every sample
    count = metrics["top_k_differs_from_frequency_count"]
    assert metrics["top_k_differs_from_frequency"] == pytest.approx(count / metrics["test_samples"])
    assert len(metrics["frequency_top_k"]) == 2
    if method == "frequency":
        assert count == 0


def test_routed_teachers_score_each_sample_with_its_cluster_teacher(
    app: dict[str, Path], tmp_path: Path
) -> None:
    models, _ = load_models([app["c0"], app["c1"]])
    splits = {name: load_split(app[name]) for name in ("train", "val", "test")}
    routes = load_cluster_ids(app["clusters"])
    cpu = torch.device("cpu")
    routed = model_probabilities(models, splits, routes, 256, cpu)
    for c in (0, 1):
        alone = model_probabilities(
            {c: models[c]}, splits, {n: np.full(len(r), c) for n, r in routes.items()}, 256, cpu
        )
        rows = routes["train"] == c
        assert rows.any() and not rows.all()
        np.testing.assert_allclose(routed["train"][rows], alone["train"][rows], rtol=1e-5)
        assert not np.array_equal(routed["train"][~rows], alone["train"][~rows])
    metrics = evaluate(
        CELL, splits_of(app), [app["c0"], app["c1"]], tmp_path / "r.json", "packd_teachers",
        clusters_path=app["clusters"], latency_repeats=2, device_name="cpu", degree=2,
    )  # fmt: skip
    assert metrics["params"] == sum(load_checkpoint(app[f"c{c}"])[0]["params"] for c in (0, 1))


def test_packd_with_one_cluster_trains_the_standard_kd_student(
    app: dict[str, Path], tmp_path: Path
) -> None:
    """Standard KD differs from PaCKD only in its teacher: with k=1 they are the same method."""
    clusters = tmp_path / "a-k1.parquet"
    splits = splits_of(app)
    centroids = tmp_path / "a-k1.centroids.json"
    cluster(splits, "a", 1, 0, 1, 0.01, clusters, centroids, tmp_path / "s.csv", tmp_path / "c.png")
    only_teacher = tmp_path / "c0.pt"
    # From scratch with one cluster, the cluster teacher is the whole-app teacher's run exactly
    scratch = {**TRAIN, "cluster_teachers": {"init": "scratch"}}
    train_teacher(
        CELL, splits, TINY_SIZES["teacher"], scratch, only_teacher,
        clusters_path=clusters, cluster_id=0,
    )  # fmt: skip
    config = {**CONFIG, "cluster": {"features": "a", "k": 1}}
    states = {}
    for method, teachers in (("packd", [only_teacher]), ("standard_kd", [app["teacher"]])):
        checkpoint = tmp_path / f"{method}.pt"
        train_student(
            CELL, splits, TINY_SIZES, method_settings(method, config), TRAIN, checkpoint, method,
            teacher_paths=teachers, clusters_path=clusters,
        )  # fmt: skip
        states[method] = load_checkpoint(checkpoint)[1]
    assert states["packd"].keys() == states["standard_kd"].keys()
    for name, tensor in states["packd"].items():
        torch.testing.assert_close(tensor, states["standard_kd"][name], rtol=0, atol=0)


def test_a_warm_started_cluster_teacher_starts_from_the_whole_app_teacher(
    app: dict[str, Path],
) -> None:
    whole = load_checkpoint(app["teacher"])[0]
    for c in range(2):
        header = load_checkpoint(app[f"c{c}"])[0]
        assert header["init"] == "warm_start"
        epoch_0 = header["history"][0]
        # Epoch 0 scores the whole-app teacher itself on the cluster's validation samples; the
        # kept epoch is never below it
        assert epoch_0["epoch"] == 0
        assert max(record["val_f1"] for record in header["history"]) >= epoch_0["val_f1"]
        assert len(header["history"]) <= 1 + TRAIN["cluster_teachers"]["epochs"]
    assert whole["history"][0]["epoch"] == 1  # the whole-app teacher starts fresh


def test_cluster_teacher_phase_warm_start_and_step_parity() -> None:
    budget = {"epochs": 10, "lr": 0.002, "batch_size": 256, "patience": 5}
    train = with_schema_defaults("train", {"teacher": budget, "student": budget}, SCHEMA)
    settings = PhaseSettings.from_config(train, "teacher", "resnet")
    warm, warm_start = cluster_teacher_phase(
        settings, {"init": "warm_start", "epochs": 3, "lr_factor": 0.5}, 1000, 3000
    )
    assert warm_start and warm.epochs == 3 and warm.lr == pytest.approx(0.001)
    scratch, warm_start = cluster_teacher_phase(settings, {"init": "scratch"}, 1000, 3000)
    # a third of the samples: three times the epochs, the whole-app teacher's step count
    assert not warm_start and scratch.epochs == 30 and scratch.lr == settings.lr
    with pytest.raises(ValueError, match="unknown cluster-teacher init"):
        cluster_teacher_phase(settings, {"init": "fresh"}, 1000, 3000)


def test_a_student_grid_selects_on_validation_and_later_seeds_replicate_the_choice(
    app: dict[str, Path], tmp_path: Path
) -> None:
    settings = method_settings("no_kd", CONFIG)
    candidates = []
    for factor in (1.0, 2.0):
        candidates.append(tmp_path / f"lr{factor:g}.pt")
        header = train_student(
            CELL, splits_of(app), TINY_SIZES, settings, TRAIN, candidates[-1], "no_kd",
            lr_factor=factor,
        )  # fmt: skip
        assert header["lr_factor"] == factor
    chosen_path, selection_path = tmp_path / "no_kd.pt", tmp_path / "no_kd.selection.json"
    selection = select_candidate(candidates, [1.0, 2.0], chosen_path, selection_path)
    best = {
        factor: max(record["val_f1"] for record in load_checkpoint(path)[0]["history"])
        for factor, path in zip((1.0, 2.0), candidates, strict=True)
    }
    assert selection["lr_factor"] == max(best, key=best.get)
    assert [candidate["val_f1"] for candidate in selection["candidates"]] == list(best.values())
    later = train_student(
        Cell(seed=2, app="syn", arch="lstm"), splits_of(app), TINY_SIZES, settings, TRAIN,
        tmp_path / "seed2.pt", "no_kd", chosen_selection_path=selection_path,
        selection_path=tmp_path / "seed2.selection.json", chosen_on_seed=1,
    )  # fmt: skip
    assert later["lr_factor"] == selection["lr_factor"]
    replicate = json.loads((tmp_path / "seed2.selection.json").read_text())
    assert replicate["chosen_on_seed"] == 1 and replicate["lr_factor"] == later["lr_factor"]


def test_the_mlp_trains_in_the_teacher_phase(app: dict[str, Path], tmp_path: Path) -> None:
    assert method_settings("mlp", CONFIG)["phase"] == "teacher"
    assert method_settings("no_kd", CONFIG)["phase"] == "student"
    train = {**TRAIN, "teacher": {**TRAIN["teacher"], "epochs": 1}}
    header = train_student(
        CELL, splits_of(app), TINY_SIZES, method_settings("mlp", CONFIG), train,
        tmp_path / "mlp.pt", "mlp",
    )  # fmt: skip
    assert len(header["history"]) == 1  # the teacher's one epoch, not the student's two


def test_the_frequency_baseline_has_no_rate_to_choose(app: dict[str, Path], tmp_path: Path) -> None:
    from packd.results_doc.results_page import _selection_lines
    from packd.tables import selection_table

    candidate = tmp_path / "seed1/syn/lstm/grid/frequency/lr1.pt"
    candidate.parent.mkdir(parents=True)
    train_student(
        CELL, splits_of(app), TINY_SIZES, method_settings("frequency", CONFIG), TRAIN,
        candidate, "frequency",
    )  # fmt: skip
    selection_path = tmp_path / "seed1/syn/lstm/frequency.selection.json"
    selection = select_candidate([candidate], [1.0], tmp_path / "frequency.pt", selection_path)
    # no epoch, so no validation F1 from training: not a 0.0 that reads as a score
    assert selection["val_f1"] is None and selection["candidates"][0]["val_f1"] is None
    table = selection_table([selection_path])
    assert table["val_f1"].isna().all()
    line = [row for row in _selection_lines(table) if "bit frequency" in row]
    assert line == ["| syn | lstm | bit frequency | trains nothing: no rate to choose | n/a |"]
