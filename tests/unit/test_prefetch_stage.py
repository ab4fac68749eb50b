"""The prefetch stages on a tiny synthetic trace and tiny untrained checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from packd.cache import levels_from_config
from packd.checkpoint import checkpoint_header, save_checkpoint
from packd.clustering import (
    assign_clusters,
    cluster_features,
    fit_clusters,
    load_cluster_ids,
    route_samples,
)
from packd.config import with_schema_defaults
from packd.dataset import load_split
from packd.distill import teacher_soft_logits
from packd.models import build_model
from packd.networks import load_models
from packd.plan import CLASSIC_PREFETCHERS, DEFAULT_FILTER_WINDOW
from packd.prefetch import (
    Prefetches,
    classic_prefetches,
    filter_prefetches,
    limit_per_load,
    llc_hit_flags,
    prefetches_from_scores,
    ranked_candidates,
    read_prefetch_file,
    replay_llc,
)
from packd.stages.data import build_dataset, cluster
from packd.stages.prefetch import (
    PrefetchSettings,
    prefetch_app,
    prefetch_outputs,
    read_test_range,
    stream_samples,
)
from packd.tables import PREFETCH_COLUMNS, PREFETCH_VALUES, prefetch_table
from packd.trace_io import write_trace_parquet
from tests.conftest import SCHEMA

HISTORY = 10
DEGREE = 2
SIZE = {"hidden": 8, "layers": 1}
# Config sections as the rules pass them: the schema's defaults filled in
DATASET = with_schema_defaults(
    "dataset",
    {
        "history": HISTORY,
        "look_forward": 16,
        "delta_bound": 128,
        "max_accesses": 2800,  # the dataset's cap: the test range must end where it ends
        "split": {"warmup": 0.05, "train": 0.7, "val": 0.2, "val_blocks": 2},
        "max_samples": {"train": 1000, "test": 200},  # test.npz: a random subset of the test range
    },
    SCHEMA,
)
CACHE = with_schema_defaults(
    "cache",
    {
        "line_bytes": 64,
        "levels": [
            {"name": "L1D", "size_kib": 1, "ways": 2},
            {"name": "LLC", "size_kib": 4, "ways": 4},
        ],
    },
    SCHEMA,
)
# prefetch_app's settings from the config's `evaluate` and `train.device`, as the rule passes them
REPLAY = {"max_accesses": None, "device_name": "cpu", "filter_window": DEFAULT_FILTER_WINDOW}
CLUSTERING = {"features": "a", "k": 2, "seed": 0, "n_init": 2, "min_cluster_fraction": 0.01}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-phase trace with loops, its dataset and clusters, and untrained tiny checkpoints."""
    root = tmp_path_factory.mktemp("prefetch_stage")
    rng = np.random.default_rng(0)
    n = 3000
    strides = np.where(np.arange(n) % 600 < 300, 1, 3)  # two phases, so clusters differ
    # Revisits (modulo 400 blocks) give LLC hits, so replays have hits and misses to compare.
    blocks = 10_000 + (np.cumsum(strides) + rng.integers(0, 2, n)) % 400
    trace = pd.DataFrame(
        {
            "instr_id": np.arange(n, dtype=np.uint64) * 7 + 1,
            "cycle": np.arange(n) * 20,
            "addr": (blocks << 6).astype(np.uint64),
            "pc": (0x400000 + (strides == 3) * 16).astype(np.uint64),
            "llc_hit": rng.random(n) < 0.3,
        }
    )
    paths = {"trace": root / "trace.parquet"}
    write_trace_parquet(trace, paths["trace"], {"source": "synthetic"})
    splits = {name: root / f"{name}.npz" for name in ("train", "val", "test")}
    build_dataset(paths["trace"], DATASET, splits, root / "sizes.json", seed=3)
    paths.update(splits)
    paths["clusters"] = root / "a-k2.parquet"
    paths["centroids"] = root / "a-k2.centroids.json"
    cluster(
        splits,
        CLUSTERING["features"],
        CLUSTERING["k"],
        CLUSTERING["seed"],
        CLUSTERING["n_init"],
        CLUSTERING["min_cluster_fraction"],
        paths["clusters"],
        paths["centroids"],
        root / "sizes.csv",
        root / "clusters.png",
    )
    for name, cluster_id in (("all", None), ("c0", 0), ("c1", 1)):
        torch.manual_seed(len(name) + (cluster_id or 0))
        model = build_model("lstm", SIZE)
        fields = {} if cluster_id is None else {"cluster": cluster_id}
        header = checkpoint_header(model, "lstm", SIZE, "teacher", "syn", **fields)
        paths[name] = root / f"{name}.pt"
        save_checkpoint(paths[name], model.state_dict(), header)
    # The median second-best score: some accesses issue DEGREE prefetches, others fewer.
    samples = stream_samples(read_test_range(paths["trace"], DATASET), HISTORY)
    second_best = np.sort(_scores(paths["all"], samples), axis=1)[:, -2]
    paths["metrics"] = root / "metrics.json"
    paths["metrics"].write_text(json.dumps({"threshold": float(np.median(second_best))}))
    return paths


def _scores(checkpoint: Path, samples: dict[str, np.ndarray]) -> np.ndarray:
    """Sigmoid scores of one model, computed here without the stage's code."""
    models, _ = load_models([checkpoint])
    routes = np.zeros(len(samples["inputs"]), np.int64)
    logits = teacher_soft_logits(models, samples["inputs"], routes, 256, "cpu")
    return torch.sigmoid(logits).numpy()


def _per_load_counts(prefetches: Prefetches) -> np.ndarray:
    return np.r_[0, np.unique(prefetches.instr_ids, return_counts=True)[1]]


def test_test_range_is_the_datasets_test_split_whole_and_in_order(app):
    stream = read_test_range(app["trace"], DATASET)
    test = load_split(app["test"])
    val = load_split(app["val"])
    instr_ids = stream["instr_id"].to_numpy()
    assert (np.diff(instr_ids.astype(np.int64)) > 0).all()
    assert instr_ids[0] > val["instr_id"].max()  # no access of validation or training
    assert instr_ids[-1] == 1 + 7 * (DATASET["max_accesses"] - 1)  # ends at the dataset's cap
    assert np.isin(test["instr_id"], instr_ids).all()
    assert len(stream) > len(test["instr_id"])  # the subset, and windows cut at the end
    first = read_test_range(app["trace"], DATASET, max_accesses=50)
    assert first["instr_id"].tolist() == instr_ids[:50].tolist()


def test_stream_samples_equal_the_dataset_samples_at_the_same_accesses(app):
    stream = read_test_range(app["trace"], DATASET)
    samples = stream_samples(stream, HISTORY)
    test = load_split(app["test"])
    assert len(samples["instr_id"]) == len(stream) - HISTORY + 1  # no access dropped
    rows = np.searchsorted(samples["instr_id"], test["instr_id"])
    assert (samples["instr_id"][rows] == test["instr_id"]).all()
    for key in ("inputs", "block_addresses", "pcs", "deltas"):
        np.testing.assert_array_equal(samples[key][rows], test[key])


@pytest.fixture(scope="module")
def ran(app, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """prefetch_app once, with the prefetch filter (the default): a model, the routed cluster
    teachers, one cluster teacher alone and every classic prefetcher, with their prefetch files
    and replay reports."""
    out = tmp_path_factory.mktemp("prefetch_app")
    checkpoints = {
        "lstm/teacher": [app["all"]],
        "lstm/packd_teachers": [app["c0"], app["c1"]],
        "lstm/c0": [app["c0"]],
    }
    keys = [*checkpoints, *(f"classic/{name}" for name in CLASSIC_PREFETCHERS)]
    out_paths = {key: (out / f"{key}.txt", out / f"{key}.json") for key in keys}
    reports = prefetch_app(
        app["trace"], DATASET, CACHE, checkpoints, dict.fromkeys(checkpoints, app["metrics"]),
        out_paths, app["centroids"],
        settings=PrefetchSettings(degree=DEGREE, distance=3, prefetch_filter=True, **REPLAY),
        seed=5,
    )  # fmt: skip
    written = {key: read_prefetch_file(paths[0], degree=DEGREE) for key, paths in out_paths.items()}
    return {"reports": dict(zip(keys, reports, strict=True)), "written": written, "out": out_paths}


@pytest.fixture(scope="module")
def ran_raw(app, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """prefetch_app with the prefetch filter off: the whole-app teacher and next-line."""
    out = tmp_path_factory.mktemp("prefetch_app_raw")
    keys = ["lstm/teacher", "classic/next_line"]
    out_paths = {key: (out / f"{key}.txt", out / f"{key}.json") for key in keys}
    reports = prefetch_app(
        app["trace"], DATASET, CACHE, {"lstm/teacher": [app["all"]]},
        {"lstm/teacher": app["metrics"]}, out_paths, app["centroids"],
        settings=PrefetchSettings(degree=DEGREE, distance=3, prefetch_filter=False, **REPLAY),
        seed=5,
    )  # fmt: skip
    written = {key: read_prefetch_file(paths[0], degree=DEGREE) for key, paths in out_paths.items()}
    return {"reports": dict(zip(keys, reports, strict=True)), "written": written}


def _stream_lines(stream: pd.DataFrame) -> np.ndarray:
    return (stream["addr"].to_numpy().astype(np.uint64) >> np.uint64(6)).astype(np.int64)


def test_raw_model_prefetches_are_the_top_bits_of_the_models_scores(app, ran_raw):
    written = ran_raw["written"]["lstm/teacher"]
    stream = read_test_range(app["trace"], DATASET)
    samples = stream_samples(stream, HISTORY)
    assert 0 < len(written) < DEGREE * len(samples["instr_id"])  # the threshold bites
    # Only loads of the test range that have a full history issue prefetches.
    assert np.isin(written.instr_ids, samples["instr_id"]).all()
    assert _per_load_counts(written).max() <= DEGREE
    # The same prefetches straight from the model's scores.
    expected = prefetches_from_scores(
        _scores(app["all"], samples),
        samples["instr_id"],
        samples["block_addresses"][:, -1],
        threshold=json.loads(app["metrics"].read_text())["threshold"],
        degree=DEGREE,
    )
    assert written.instr_ids.tolist() == expected.instr_ids.tolist()
    assert written.addresses.tolist() == expected.addresses.tolist()
    report = ran_raw["reports"]["lstm/teacher"]
    assert report["filter"] is False and report["filter_window"] is None


def test_filtered_model_prefetches_are_the_filtered_ranked_bits(app, ran, ran_raw):
    written = ran["written"]["lstm/teacher"]
    stream = read_test_range(app["trace"], DATASET)
    samples = stream_samples(stream, HISTORY)
    assert np.isin(written.instr_ids, samples["instr_id"]).all()
    assert _per_load_counts(written).max() <= DEGREE
    candidates = ranked_candidates(
        _scores(app["all"], samples),
        samples["instr_id"],
        samples["block_addresses"][:, -1],
        threshold=json.loads(app["metrics"].read_text())["threshold"],
    )
    lines = _stream_lines(stream)
    expected = filter_prefetches(
        stream["instr_id"].to_numpy(), lines, candidates, DEGREE, DEFAULT_FILTER_WINDOW
    )
    assert written.instr_ids.tolist() == expected.instr_ids.tolist()
    assert written.addresses.tolist() == expected.addresses.tolist()
    # No written line was demanded or prefetched in the window before it.
    issuing = np.searchsorted(stream["instr_id"].to_numpy(), written.instr_ids)
    written_lines = (written.addresses >> np.uint64(6)).astype(np.int64)
    for access, line in zip(issuing[:200], written_lines[:200], strict=True):
        recent = lines[max(0, access - DEFAULT_FILTER_WINDOW + 1) : access + 1]
        assert line not in recent
    filtered, raw = ran["reports"]["lstm/teacher"], ran_raw["reports"]["lstm/teacher"]
    assert filtered["filter"] is True and filtered["filter_window"] == DEFAULT_FILTER_WINDOW
    assert filtered["redundant"] < raw["redundant"]


def test_routed_teachers_route_every_access_as_the_refit_model_did(app, ran):
    """The saved centroids route the stream's samples exactly as k-means fitted again with the
    cluster rule's settings does (what the stage did before the centroids were saved)."""
    stream = read_test_range(app["trace"], DATASET)
    samples = stream_samples(stream, HISTORY)
    features = CLUSTERING["features"]
    refit = fit_clusters(
        cluster_features(load_split(app["train"]), features),
        k=CLUSTERING["k"],
        seed=CLUSTERING["seed"],
        n_init=CLUSTERING["n_init"],
        min_cluster_fraction=CLUSTERING["min_cluster_fraction"],
    )
    routes = route_samples(app["centroids"], samples)
    expected = assign_clusters(refit, cluster_features(samples, features))
    np.testing.assert_array_equal(routes, expected)
    assert len(set(routes.tolist())) == CLUSTERING["k"]  # both teachers are asked
    test_routes = route_samples(app["centroids"], load_split(app["test"]))
    np.testing.assert_array_equal(test_routes, load_cluster_ids(app["clusters"])["test"])
    routed, single = ran["written"]["lstm/packd_teachers"], ran["written"]["lstm/c0"]
    assert len(routed) > 0 and _per_load_counts(routed).max() <= DEGREE
    assert np.isin(routed.instr_ids, samples["instr_id"]).all()
    assert routed.addresses.tolist() != single.addresses.tolist()  # both teachers speak


@pytest.mark.parametrize("prefetcher", CLASSIC_PREFETCHERS)
def test_classic_prefetches_stay_in_the_test_range_and_degree(app, ran, prefetcher):
    written = ran["written"][f"classic/{prefetcher}"]
    stream = read_test_range(app["trace"], DATASET)
    # Best-offset learns for up to 100 rounds of 52 offsets: longer than this test range.
    assert len(written) > 0 or prefetcher == "best_offset"
    assert np.isin(written.instr_ids, stream["instr_id"].to_numpy()).all()
    assert _per_load_counts(written).max() <= DEGREE
    # The classic prefetchers pass through the models' filter.
    instr_ids, lines = stream["instr_id"].to_numpy(), _stream_lines(stream)
    own = classic_prefetches(prefetcher, instr_ids, lines, stream["pc"].to_numpy(), DEGREE, 64, 3)
    expected = filter_prefetches(instr_ids, lines, own, DEGREE, DEFAULT_FILTER_WINDOW)
    assert written.addresses.tolist() == expected.addresses.tolist()


def test_raw_classic_prefetches_are_unfiltered(app, ran, ran_raw):
    stream = read_test_range(app["trace"], DATASET)
    instr_ids, lines = stream["instr_id"].to_numpy(), _stream_lines(stream)
    own = classic_prefetches("next_line", instr_ids, lines, stream["pc"].to_numpy(), DEGREE, 64)
    assert ran_raw["written"]["classic/next_line"].addresses.tolist() == own.addresses.tolist()
    assert len(ran["written"]["classic/next_line"]) < len(own)  # the filter drops the repeats


def test_each_report_equals_a_direct_replay(app, ran):
    key = "classic/next_line"
    result = ran["reports"][key]
    assert json.loads(ran["out"][key][1].read_text()) == pytest.approx(result)
    stream = read_test_range(app["trace"], DATASET)
    llc = levels_from_config(CACHE)[-1]
    lines = stream["addr"].to_numpy().astype(np.int64) >> 6
    prefetches = ran["written"][key]
    hits, counts = replay_llc(stream["instr_id"].to_numpy(), lines, prefetches, llc, 3)
    baseline_misses = int((~llc_hit_flags(lines, llc)).sum())
    assert result["baseline_misses"] == baseline_misses > 0
    assert result["misses"] == int((~hits).sum()) == counts.misses
    assert result["useful"] == counts.useful > 0
    assert result["issued"] == len(prefetches)
    assert (result["filled"], result["redundant"], result["late"]) == (
        counts.filled,
        counts.redundant,
        counts.late,
    )
    assert result["coverage"] == counts.useful / baseline_misses
    assert result["accuracy"] == counts.useful / counts.filled
    assert result["miss_reduction"] == (baseline_misses - counts.misses) / baseline_misses
    assert (result["seed"], result["source"], result["name"]) == (5, "classic", "next_line")


def _report(app, source, name, coverage):
    ratios = dict.fromkeys(PREFETCH_VALUES, 0.0)
    return {"app": app, "source": source, "name": name, **ratios, "coverage": coverage}


def test_prefetch_table_ranks_and_keeps_classic_rows_beside_each_arch():
    f1 = {"teacher": 0.9, "packd": 0.8, "no_kd": 0.7}
    metrics = [
        {"app": "a", "arch": arch, "method": method, "f1": value}
        for arch in ("lstm", "mixer")
        for method, value in f1.items()
    ]
    reports = [_report("a", "lstm", method, value / 2) for method, value in f1.items()]
    reports += [_report("a", "mixer", method, 1 - value) for method, value in f1.items()]
    reports += [_report("a", "classic", "next_line", 0.3), _report("b", "classic", "x", 0.1)]
    table = prefetch_table(reports, metrics)
    assert list(table.columns) == PREFETCH_COLUMNS
    lstm = table[table["arch"] == "lstm"]
    assert lstm["name"].tolist() == ["teacher", "packd", "no_kd", "next_line"]
    assert lstm["kind"].tolist() == ["model"] * 3 + ["classic"]
    assert lstm["f1_coverage_rho"].iloc[0] == pytest.approx(1.0)
    assert lstm["f1_coverage_p"].iloc[0] == pytest.approx(0.0)  # a perfect rank agreement
    assert set(lstm["f1_ranking_holds"]) == {"yes"}
    mixer = table[table["arch"] == "mixer"]
    assert mixer["f1_coverage_rho"].iloc[0] == pytest.approx(-1.0)
    assert set(mixer["f1_ranking_holds"]) == {"no"}
    assert "b" not in set(table["app"])  # an app without models has no cell
    assert np.isnan(table.loc[table["kind"] == "classic", "f1"]).all()


def test_prefetch_outputs_write_table_and_figure(tmp_path):
    metrics = [{"app": "a", "arch": "lstm", "method": "packd", "f1": 0.5}]
    paths = {"reports": [], "metrics": []}
    for kind, entries in (
        (
            "reports",
            [_report("a", "lstm", "packd", 0.2), _report("a", "classic", "ip_stride", 0.1)],
        ),
        ("metrics", metrics),
    ):
        for index, entry in enumerate(entries):
            path = tmp_path / f"{kind}{index}.json"
            path.write_text(json.dumps(entry))
            paths[kind].append(path)
    out = {name: tmp_path / name for name in ("t.csv", "t.md", "f.png")}
    table = prefetch_outputs(paths["reports"], paths["metrics"], *out.values())
    assert pd.read_csv(out["t.csv"])["name"].tolist() == ["packd", "ip_stride"]
    assert table["f1_ranking_holds"].tolist() == ["n/a", "n/a"]  # one model: no ranking
    assert "| packd" in out["t.md"].read_text()
    assert out["f.png"].read_bytes()[:4] == b"\x89PNG"


def test_limit_per_load_keeps_the_first_prefetches_of_each_instr_id():
    prefetches = Prefetches(np.array([1, 1, 1, 2, 3, 3, 3, 3]), np.arange(8) * 64)
    kept = limit_per_load(prefetches, degree=2)
    assert kept.instr_ids.tolist() == [1, 1, 2, 3, 3]
    assert kept.addresses.tolist() == [0, 64, 192, 256, 320]
    assert len(limit_per_load(Prefetches.empty(), 2)) == 0
