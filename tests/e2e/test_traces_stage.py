"""The trace stage end to end: five built-in kernels and an imported trace, plus failing inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from packd.trace_io import TRACE_SCHEMA, read_trace_parquet
from tests.conftest import copy_workflow, run_snakemake

pytestmark = pytest.mark.e2e

KERNEL_APPS = ["bfs", "pr", "cc", "bc", "sssp"]


@pytest.fixture(scope="module")
def traces_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("traces"))
    run_snakemake(
        workdir, "traces", "--cores", "2", "--configfile", "tests/configs/tiny_traces.yaml"
    )
    return workdir


def test_every_app_has_a_schema_true_sorted_trace(traces_run: Path) -> None:
    for app in [*KERNEL_APPS, "dpc"]:
        path = traces_run / f"results/traces/{app}.parquet"
        assert pq.read_schema(path).remove_metadata().equals(TRACE_SCHEMA), app
        trace, metadata = read_trace_parquet(path)
        assert len(trace) > 500, app
        assert np.all(np.diff(trace["instr_id"].to_numpy().astype(np.int64)) >= 0), app
        assert trace["llc_hit"].any() and not trace["llc_hit"].all(), app
        assert metadata["source"] == ("import" if app == "dpc" else "kernel")


def test_kernel_metadata_says_how_the_trace_was_made(traces_run: Path) -> None:
    _, metadata = read_trace_parquet(traces_run / "results/traces/bc.parquet")
    assert metadata["kernel"] == "bc" and metadata["graph"] == "kron"
    assert metadata["scale"] == 10 and metadata["seed"] == 3
    assert metadata["backend"] == "sancov"
    assert metadata["cycle_kind"].startswith("modelled")
    assert metadata["instr_id_kind"] == "load_ordinal"
    assert [level["name"] for level in metadata["cache"]["levels"]] == ["L1D", "L2", "LLC"]
    assert "clang" in metadata["tool_versions"]["cc"]


def test_summary_counts_match_the_traces(traces_run: Path) -> None:
    summary = pd.read_csv(traces_run / "results/traces/summary.csv").set_index("app")
    assert list(summary.index) == [*KERNEL_APPS, "dpc"]
    for app in summary.index:
        trace, _ = read_trace_parquet(traces_run / f"results/traces/{app}.parquet")
        assert summary.loc[app, "accesses"] == len(trace)
        assert summary.loc[app, "llc_misses"] == int((~trace["llc_hit"]).sum())
        assert summary.loc[app, "distinct_pcs"] == trace["pc"].nunique()


def test_kernels_have_different_access_patterns(traces_run: Path) -> None:
    pcs = {
        app: set(read_trace_parquet(traces_run / f"results/traces/{app}.parquet")[0]["pc"])
        for app in KERNEL_APPS
    }
    assert len({frozenset(found) for found in pcs.values()}) == len(KERNEL_APPS)


def write_config(workdir: Path, apps: dict) -> str:
    config = yaml.safe_load((workdir / "tests/configs/tiny_traces.yaml").read_text())
    config["apps"] = apps
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    return "bad.yaml"


def run_failing(workdir: Path, configfile: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "snakemake", "traces", "--cores", "1", "--configfile", configfile],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode != 0
    logs = "".join(path.read_text() for path in (workdir / "logs").rglob("*.log"))
    return completed.stdout + completed.stderr + logs


def test_a_crashing_traced_program_fails_the_job_and_leaves_no_parquet(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    output = run_failing(workdir, write_config(workdir, {"crash": {"command": "sh -c 'exit 3'"}}))
    assert "exit" in output and "3" in output
    assert not (workdir / "results/traces/crash.parquet").exists()


def test_a_malformed_import_names_the_file_and_line(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    (workdir / "broken.txt").write_text(
        "*** banner\n1, 10, 7f00, 400000, 0\n2, 20, zz, 400004, 1\n"
    )
    output = run_failing(workdir, write_config(workdir, {"broken": {"import": "broken.txt"}}))
    assert "broken.txt:3" in output
    assert not (workdir / "results/traces/broken.parquet").exists()


def test_a_missing_import_stops_the_run_before_any_job(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    output = run_failing(workdir, write_config(workdir, {"gone": {"import": "gone.txt.xz"}}))
    assert "apps.gone.import: no such file: gone.txt.xz" in output
