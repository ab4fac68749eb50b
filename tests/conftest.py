"""Shared fixtures: a copy of the workflow in a scratch folder and one tiny run of the DAG."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def load_script(path: Path, name: str):
    """A script outside the package (benchmarks_scripts/...) imported as a module named name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What a run of the workflow needs from the repository (results go to the copy, not the repo).
WORKFLOW_PARTS = [
    "Snakefile",
    "config.yaml",
    "workflow",
    "profiles",
    "envs",
    "tests/configs",
    "tests/data",
    "config",
]


def copy_workflow(destination: Path) -> Path:
    """Copy the workflow's files into destination, so a run there leaves the repository clean."""
    destination.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(
                source, destination / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            (destination / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / part)
    return destination


def snakemake_command(*arguments: str) -> list[str]:
    """Snakemake from the running interpreter's environment."""
    return [sys.executable, "-m", "snakemake", *arguments]


def run_snakemake(
    workdir: Path, *arguments: str, timeout: int = 1200
) -> subprocess.CompletedProcess:
    """Run Snakemake in workdir; on failure, fail the test with the tail of its output."""
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    completed = subprocess.run(
        snakemake_command(*arguments),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    if completed.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(arguments)} failed ({completed.returncode}):\n"
            f"{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}"
        )
    return completed


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG on the tiny config, run once locally; returns the run's folder.

    Under pytest-xdist (`make test` runs two workers) each worker has its own session, so the
    run lives in the folder the workers share, behind a lock: the first worker to need it runs
    it, the other waits and reuses it.
    """

    def run_in(workdir: Path) -> Path:
        copy_workflow(workdir)
        run_snakemake(workdir, "--cores", "2", "--configfile", "tests/configs/tiny.yaml")
        return workdir

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return run_in(tmp_path_factory.mktemp("tiny-local"))
    shared = tmp_path_factory.getbasetemp().parent
    workdir, finished = shared / "tiny-local", shared / "tiny-local.finished"
    with FileLock(str(shared / "tiny-local.lock")):
        if not finished.exists():
            if workdir.exists():  # a worker's earlier attempt failed: start clean
                shutil.rmtree(workdir)
            run_in(workdir)
            finished.touch()
    return workdir
