"""Repeated and interrupted runs of a small config give the same results and no broken file.

A run is stopped with SIGKILL (the machine or the batch system killing everything) or SIGINT
(Ctrl-C) while a training job runs, then run again. Its outputs must match a clean run's, measured
times aside (tables, metrics and checkpoint headers; weights and every other file byte for byte),
and nothing under results/ may be half-written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from packd.checkpoint import load_checkpoint
from packd.tables import TIMING_COLUMNS
from tests.conftest import copy_workflow, run_snakemake, snakemake_command

pytestmark = pytest.mark.e2e

# One imported app (no tracing), one architecture: about 17 jobs, each a few seconds.
SMALL_CONFIG = "small.yaml"
SMALL_METHODS = ["teacher", "packd_teachers", "packd", "standard_kd", "no_kd"]
TABLES = [
    f"results/tables/{name}.{extension}"
    for name in ("main", "main_summary", "compression", "significance")
    for extension in ("csv", "md")
]
# Fields of the metrics JSON and of checkpoint headers that hold measured times.
TIMING_FIELDS = {"latency_b1_s", "latency_b1024_s", "seconds", "samples_per_s"}
# Snakemake's words when a killed run left its lock behind.
STALE_LOCK_MESSAGE = "cannot be locked"


def write_small_config(workdir: Path) -> None:
    """The tiny config cut down to the dpc import app, LSTM, one seed and the main methods."""
    config = yaml.safe_load((workdir / "tests/configs/tiny.yaml").read_text())
    config["apps"] = {"dpc": config["apps"]["dpc"]}
    config["archs"] = ["lstm"]
    config["methods"] = SMALL_METHODS
    config["dataset"]["max_samples"] = {"train": 600, "val": 200, "test": 300}
    # One training replicate and one teacher learning rate: the fewest jobs.
    config.pop("seeds", None)
    config["train"].pop("lr_grid", None)
    # Teachers that train for seconds, not a fraction of one: the signal must land while a
    # training job runs (with a quick start-up, a 2-epoch teacher ended before it was sent).
    config["train"]["teacher"].update({"epochs": 60, "patience": 60, "min_epochs": 1})
    (workdir / SMALL_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))


def small_workflow(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh copy of the workflow with the small config beside it."""
    workdir = copy_workflow(tmp_path_factory.mktemp(name))
    write_small_config(workdir)
    return workdir


def small_arguments(*extra: str) -> list[str]:
    """Snakemake arguments that build the tables of the small config."""
    return [*TABLES, "--cores", "2", "--configfile", SMALL_CONFIG, *extra]


def run_small(workdir: Path) -> None:
    """Run the small config to the end."""
    run_snakemake(workdir, *small_arguments(), timeout=600)


def start_small(workdir: Path) -> subprocess.Popen:
    """Start the small config in its own process group, as a shell starts a foreground job."""
    with (workdir / "interrupted-run.log").open("w") as log:
        return subprocess.Popen(
            snakemake_command(*small_arguments()),
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            # A shell starts background commands with SIGINT ignored, and the child inherits
            # that: restore the default, so that Snakemake (Python) turns SIGINT into its
            # KeyboardInterrupt handling, as it would in a terminal.
            preexec_fn=restore_sigint,
        )


def restore_sigint() -> None:
    """In the child, before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_training(workdir: Path, run: subprocess.Popen, timeout: float = 300) -> None:
    """Return once a training job has logged its network, i.e. it is running its own code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(log.stat().st_size > 0 for log in (workdir / "logs").glob("teachers/**/*.log")):
            return
        if run.poll() is not None:
            pytest.fail(f"snakemake ended ({run.returncode}) before a training job started")
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    pytest.fail(f"no training job started within {timeout} s")


def interrupt(run: subprocess.Popen, signal_number: int) -> None:
    """Send the signal to Snakemake and all its jobs, and wait for Snakemake to end."""
    os.killpg(run.pid, signal_number)
    try:
        run.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"snakemake still ran 120 s after {signal.Signals(signal_number).name}")


def group_is_gone(group_id: int, timeout: float = 30) -> bool:
    """Whether every process of the group has ended (killed jobs take a moment to be reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group_id, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def read_markdown_table(path: Path) -> pd.DataFrame:
    """A table written by DataFrame.to_markdown, every cell as its text."""
    lines = path.read_text().splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, body = rows[0], rows[2:]  # rows[1] is the |---| line under the header
    return pd.DataFrame(body, columns=header)


def tables_without_timings(workdir: Path) -> dict[str, pd.DataFrame]:
    """Every table of the run as text cells, without the columns that hold measured times."""
    tables = {}
    for table in TABLES:
        path = workdir / table
        if path.suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = read_markdown_table(path)
        tables[table] = frame.drop(columns=TIMING_COLUMNS, errors="ignore")
    return tables


def assert_same_tables(run: Path, reference: Path) -> None:
    """The two runs' tables agree exactly, timing columns aside."""
    tables, reference_tables = tables_without_timings(run), tables_without_timings(reference)
    for table in TABLES:
        pd.testing.assert_frame_equal(tables[table], reference_tables[table], obj=table)


def without_timings(value: object) -> str:
    """JSON-like value as sorted JSON text, without the fields that hold measured times."""

    def strip(item: object) -> object:
        if isinstance(item, dict):
            return {key: strip(inner) for key, inner in item.items() if key not in TIMING_FIELDS}
        if isinstance(item, list):
            return [strip(inner) for inner in item]
        return item

    # Text, not objects: NaN compares equal to itself only as text.
    return json.dumps(strip(value), sort_keys=True)


def result_files(workdir: Path) -> list[str]:
    """Every file under results/, relative to the run's folder."""
    results = workdir / "results"
    return sorted(str(path.relative_to(workdir)) for path in results.rglob("*") if path.is_file())


def assert_same_results(run: Path, reference: Path) -> None:
    """Every output equals the reference run's, measured times aside."""
    files = result_files(run)
    assert files == result_files(reference)
    assert_same_tables(run, reference)
    for relative in files:
        path, reference_path = run / relative, reference / relative
        if relative in TABLES:
            continue
        if path.suffix == ".pt":
            header, weights = load_checkpoint(path)
            reference_header, reference_weights = load_checkpoint(reference_path)
            assert without_timings(header) == without_timings(reference_header), relative
            assert weights.keys() == reference_weights.keys(), relative
            for name, tensor in weights.items():
                assert torch.equal(tensor, reference_weights[name]), f"{relative}: {name}"
        elif path.suffix == ".json":
            payload = json.loads(path.read_text())
            reference_payload = json.loads(reference_path.read_text())
            assert without_timings(payload) == without_timings(reference_payload), relative
        else:
            assert path.read_bytes() == reference_path.read_bytes(), relative


def broken_results(workdir: Path, allow_temporary: bool = False) -> list[str]:
    """Files under results/ that do not load, and temporary files that an atomic write left."""
    broken = []
    for path in sorted((workdir / "results").rglob("*")):
        if not path.is_file():
            continue
        if path.name.startswith("."):
            if not allow_temporary:
                broken.append(f"{path}: temporary file left behind")
            continue
        try:
            if path.suffix == ".pt":
                load_checkpoint(path)  # torch.load with weights_only=True
            elif path.suffix == ".npz":
                with np.load(path) as arrays:
                    for name in arrays.files:
                        arrays[name]
            elif path.suffix == ".parquet":
                pd.read_parquet(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".csv":
                pd.read_csv(path)
        except Exception as error:  # noqa: BLE001 - any failure to load means a broken file
            broken.append(f"{path}: {type(error).__name__}: {error}")
    return broken


def interrupted_then_rerun(workdir: Path, signal_number: int) -> subprocess.CompletedProcess:
    """Interrupt the small config during training; return the first plain rerun's result."""
    run = start_small(workdir)
    wait_for_training(workdir, run)
    interrupt(run, signal_number)
    assert group_is_gone(run.pid), "jobs of the interrupted run are still running"
    assert not (workdir / "results/tables/main.csv").exists(), "the run ended before the kill"
    assert broken_results(workdir, allow_temporary=True) == []
    return subprocess.run(
        snakemake_command(*small_arguments()),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small config run once, uninterrupted."""
    workdir = small_workflow(tmp_path_factory, "clean")
    run_small(workdir)
    return workdir


def test_two_clean_runs_give_the_same_results(
    clean_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    second_run = small_workflow(tmp_path_factory, "clean-again")
    run_small(second_run)
    assert_same_results(second_run, clean_run)
    main = pd.read_csv(second_run / "results/tables/main.csv")
    assert set(main["method"]) == set(SMALL_METHODS)
    assert (main[TIMING_COLUMNS] > 0).all().all(), "the timing columns should hold times"


def test_a_killed_run_needs_unlock_then_finishes_the_same(
    clean_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = small_workflow(tmp_path_factory, "killed")
    rerun = interrupted_then_rerun(workdir, signal.SIGKILL)
    # Snakemake could not release its lock: the next run refuses until --unlock.
    assert rerun.returncode != 0
    assert STALE_LOCK_MESSAGE in rerun.stderr and "--unlock" in rerun.stderr, rerun.stderr[-2000:]
    run_snakemake(workdir, *small_arguments("--unlock"))
    # The profile's rerun-incomplete redoes the jobs that were killed.
    run_small(workdir)
    assert broken_results(workdir) == []
    assert_same_results(workdir, clean_run)


def test_an_interrupted_run_reruns_without_unlock_and_finishes_the_same(
    clean_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = small_workflow(tmp_path_factory, "interrupted")
    rerun = interrupted_then_rerun(workdir, signal.SIGINT)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert broken_results(workdir) == []
    assert_same_results(workdir, clean_run)
