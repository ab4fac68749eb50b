"""benchmarks_scripts/seeds.py: interval widths by first-n seeds and job time per seed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks_scripts/seeds.py"


def _load_script():
    return load_script(SCRIPT, "seeds_bench")


def _main_table(differences: dict[int, float]) -> pd.DataFrame:
    """Validation rows of two apps where packd - no_kd is differences[seed] in both apps."""
    rows = []
    for seed, difference in differences.items():
        for app, base in (("bc", 0.30), ("sssp", 0.50)):
            for method, f1 in (("no_kd", base), ("packd", base + difference)):
                rows.append(
                    {
                        "protocol": "validation",
                        "seed": seed,
                        "app": app,
                        "arch": "resnet",
                        "method": method,
                        "f1": f1,
                    }
                )
    return pd.DataFrame(rows)


def test_widths_follow_the_t_interval_of_the_first_n_seeds():
    seeds = _load_script()
    differences = {1: 0.010, 2: 0.004, 3: 0.007, 4: 0.001}
    widths = seeds.interval_widths(_main_table(differences))
    packd = widths[widths["comparison"] == "packd - no_kd"].set_index("seeds")
    assert list(packd.index) == [2, 3, 4]
    for n in (2, 3, 4):
        values = np.array(list(differences.values())[:n])
        half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
        assert packd.loc[n, "width"] == pytest.approx(2 * half)
        assert packd.loc[n, "mean"] == pytest.approx(values.mean())
    # more seeds with the same spread narrow the interval
    assert packd.loc[4, "width"] < packd.loc[3, "width"]


def _write_benchmarks(root: Path, seconds_by_path: dict[str, float]) -> None:
    """Snakemake benchmark files under root, each with its job's seconds."""
    for relative, seconds in seconds_by_path.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")


def test_job_seconds_are_summed_per_seed_folder(tmp_path):
    seeds = _load_script()
    _write_benchmarks(
        tmp_path,
        {
            "teachers/seed1/bc/resnet/grid/lr1.tsv": 100.0,
            "students/seed1/bc/resnet/no_kd.tsv": 20.0,
            "students/seed12/bc/resnet/no_kd.tsv": 30.0,
            "traces/trace_app-bc.tsv": 7.0,
        },
    )
    costs = seeds.seed_job_seconds(tmp_path)
    assert costs.to_dict() == {0: 7.0, 1: 120.0, 12: 30.0}


def test_only_the_listed_benchmarks_count(tmp_path):
    seeds = _load_script()
    _write_benchmarks(
        tmp_path / "benchmarks",
        {
            "students/seed2/bc/resnet/no_kd.tsv": 20.0,
            "students/seed2/bc/resnet/roast-x4.tsv": 90.0,
            "teachers/seed2/bc/resnet/replicate.tsv": 100.0,
        },
    )
    dry_run = (
        "rule train_student:\n"
        "    log: logs/students/seed2/bc/resnet/no_kd.log\n"
        "    benchmark: benchmarks/students/seed2/bc/resnet/no_kd.tsv\n"
        "rule replicate_teacher:\n"
        "    benchmark: benchmarks/teachers/seed2/bc/resnet/replicate.tsv\n"
    )
    only = seeds.dry_run_benchmarks(dry_run)
    assert only == {
        "benchmarks/students/seed2/bc/resnet/no_kd.tsv",
        "benchmarks/teachers/seed2/bc/resnet/replicate.tsv",
    }
    assert seeds.seed_job_seconds(tmp_path / "benchmarks", only).to_dict() == {2: 120.0}
    assert seeds.seed_job_seconds(tmp_path / "benchmarks").to_dict() == {2: 210.0}


def test_the_script_writes_its_page(tmp_path):
    workdir = tmp_path / "run"
    (workdir / "results/tables").mkdir(parents=True)
    _main_table({1: 0.010, 2: 0.004, 3: 0.007}).to_csv(workdir / "results/tables/main.csv")
    bench = workdir / "benchmarks/students/seed1"
    bench.mkdir(parents=True)
    (bench / "no_kd.tsv").write_text("s\th:m:s\n60.0\t0:01:00\n")
    page = tmp_path / "seeds.md"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--workdir",
            str(workdir),
            "--markdown",
            str(page),
            "--all-benchmarks",  # a bare folder: no workflow to dry-run
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    text = page.read_text()
    assert "packd - no_kd" in text and "seed 1" in text
    # width with 3 seeds, as the page prints it
    values = np.array([0.010, 0.004, 0.007])
    width = 2 * stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert f"{width:.4f}" in text


def test_source_sds_take_the_per_seed_mean_over_cells():
    seeds = _load_script()
    rows = []
    for seed, shift in ((1, 0.00), (2, 0.02), (3, 0.01)):
        for app in ("bc", "sssp"):
            for method, base in (
                ("teacher", 0.4),
                ("packd", 0.33),
                ("standard_kd", 0.32),
                ("no_kd", 0.30),
            ):
                value = base + (shift if method == "packd" else 0.0)
                rows.append(
                    {
                        "seed": seed,
                        "app": app,
                        "arch": "resnet",
                        "method": method,
                        "run": value,
                        "whole test": value,
                        "whole val and test": base,
                    }
                )
    sds = seeds.source_sds(pd.DataFrame(rows))
    assert sds.loc["packd - no_kd", "run"] == pytest.approx(np.std([0.0, 0.02, 0.01], ddof=1))
    assert sds.loc["packd - no_kd", "whole val and test"] == pytest.approx(0.0)
    assert sds.loc["standard_kd - no_kd", "run"] == pytest.approx(0.0)


def test_run_description_names_the_seeds_beyond_the_configs(tmp_path: Path) -> None:
    module = _load_script()
    main = _main_table({1: 0.01, 2: 0.02, 3: 0.0})
    configfile = tmp_path / "config.yaml"
    configfile.write_text("seeds: [1, 2]\n")
    text = module.run_description(tmp_path, main, configfile)
    assert "seeds [1, 2, 3]" in text
    assert "`--config seeds=[1,2,3]`" in text
    configfile.write_text("seeds: [3, 1, 2]\n")
    assert "--config" not in module.run_description(tmp_path, main, configfile)
