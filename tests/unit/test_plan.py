"""packd.plan: what the DAG needs before any job runs, without torch or numba."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import copy_workflow, run_snakemake

# Only the jobs need these: each costs a dry run seconds of start-up.
HEAVY_PACKAGES = {"torch", "numba"}
# `python -X importtime` writes one line per imported module: "import time: self | cumulative |
# name", the name indented by its nesting.
IMPORT_TIME_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)


def imported_packages(import_times: str) -> set[str]:
    """The top-level packages that `python -X importtime` output reports imported."""
    return {name.split(".")[0] for name in IMPORT_TIME_LINE.findall(import_times)}


def test_imported_packages_reads_import_time_lines() -> None:
    lines = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   numba.core\n"
        "import time:        80 |        200 | yaml\n"
    )
    assert imported_packages(lines) == {"numba", "yaml"}


def test_building_the_dag_imports_neither_torch_nor_numba(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = copy_workflow(tmp_path / "workflow")
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # as `python -X importtime`
    completed = run_snakemake(workdir, "-n", "--cores", "1", "--quiet", timeout=300)
    imported = imported_packages(completed.stderr)
    assert "snakemake" in imported and "packd" in imported, completed.stderr[-2000:]
    assert not imported & HEAVY_PACKAGES, (
        f"building the DAG imported {sorted(imported & HEAVY_PACKAGES)}: the rule files must "
        "import only light modules (packd.plan, packd.config, packd.methods)"
    )
