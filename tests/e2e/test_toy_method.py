"""A compression method from outside the package (tests/toy_method.py, one method entry and one
network entry) trains, is evaluated and appears in the tables, registered by PACKD_PLUGINS alone:
no file of the workflow or the package names it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from packd.plugins import PLUGINS_VARIABLE
from tests.conftest import REPO, copy_workflow, run_snakemake

pytestmark = pytest.mark.e2e

TOY = "toy"  # tests.toy_method's method and network
METHODS = ["teacher", "no_kd", "frequency", TOY]


def toy_config() -> dict:
    """The tiny config, cut to one app (the imported trace: nothing to compile or trace), one
    arch and one seed."""
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config["apps"] = {"dpc": config["apps"]["dpc"]}
    config.update(archs=["lstm"], seeds=[7], methods=METHODS)
    return config


def files_naming_the_toy(roots: list[Path]) -> list[Path]:
    """The text files under roots in which the toy's name stands as a word."""
    word = re.compile(rf"\b{TOY}\b")
    paths = [path for root in roots for path in sorted(root.rglob("*")) if path.is_file()]
    texts = {path: path.read_bytes().decode("utf-8", errors="ignore") for path in paths}
    return [path for path, text in texts.items() if word.search(text)]


def test_a_plugin_method_trains_evaluates_and_appears_in_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = copy_workflow(tmp_path / "run")
    assert files_naming_the_toy([workdir, REPO / "src"]) == []
    (workdir / "toy.yaml").write_text(yaml.safe_dump(toy_config()))
    monkeypatch.setenv(PLUGINS_VARIABLE, "tests.toy_method")
    # every job imports the plugin, so it must find the repository's tests package
    search_path = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(search_path))
    tables = ["results/tables/main.csv", "results/tables/compression.csv"]
    run_snakemake(workdir, *tables, "--cores", "2", "--configfile", "toy.yaml")

    main = pd.read_csv(workdir / tables[0])
    assert set(main["method"]) == set(METHODS)
    toy = main[main["method"] == TOY]
    assert set(toy["protocol"]) == {"validation", "test_selected"}
    assert toy["f1"].between(0, 1).all() and not toy.isna().any().any()
    assert (toy["compression"] > 1).all()  # smaller than the teacher
    selection_path = workdir / f"results/students/seed7/dpc/lstm/{TOY}.selection.json"
    selection = json.loads(selection_path.read_text())
    assert len(selection["candidates"]) == len(toy_config()["train"]["lr_grid"]["lr_factor"])
    compression = pd.read_csv(workdir / tables[1])
    assert TOY in set(compression["method"])
