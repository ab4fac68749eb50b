"""The linters the project promises: ruff, ruff format, snakefmt, Snakemake's own lint and mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("snakefmt", "--check", "Snakefile", "workflow"),
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_linter_is_clean(command: tuple[str, ...]) -> None:
    executable = str(Path(sys.executable).parent / command[0])
    completed = run(executable, *command[1:])
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_snakemake_lint_is_clean() -> None:
    completed = run(sys.executable, "-m", "snakemake", "--lint")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Congratulations, your workflow is in a good condition!" in output, output


def test_mypy_is_clean() -> None:
    """mypy over src/ (pyproject.toml's [tool.mypy]): about 20 s from a cold cache, 1 s warm."""
    completed = run(sys.executable, "-m", "mypy")
    assert completed.returncode == 0, completed.stdout + completed.stderr
