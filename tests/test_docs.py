"""Docs that cannot drift: the rule graph is the workflow's, results come from tables."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from packd.results_doc import (
    README_END,
    README_START,
    frontier_logs_and_benchmarks,
    peak_concurrency,
    records_until,
    render_frontier,
    render_results,
    render_sweeps,
    run_time_figures,
    run_time_line,
    run_wall_seconds,
    splice_run_times,
    sweep_logs_and_benchmarks,
)
from packd.tables import learnability_table
from tests.conftest import REPO, run_snakemake


def test_committed_rule_graph_is_the_workflows(tmp_path: Path) -> None:
    """docs/rulegraph.dot must equal `snakemake --rulegraph`; regenerate with
    `snakemake --cores 1 -f rulegraph`."""
    completed = run_snakemake(
        REPO, "--rulegraph", "--nolock", "--configfile", "config.yaml", "--quiet", "all"
    )
    committed = (REPO / "docs/rulegraph.dot").read_text()
    # Edges by rule name: Snakemake numbers the rules and orders the edges in set order, which
    # changes with Python's string hashing from one process to the next
    assert _rule_edges(completed.stdout) == _rule_edges(committed), (
        "docs/rulegraph.dot is stale: run `snakemake --cores 1 -f rulegraph`"
    )


def _rule_edges(dot: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The rule names and the (upstream, downstream) edges of a Snakemake rule graph."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.MULTILINE))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.MULTILINE)
    assert labels and edges, "not a rule graph"
    return set(labels.values()), {(labels[a], labels[b]) for a, b in edges}


def test_rule_edges_ignore_numbering_and_order() -> None:
    first = '0[label = "all", c];\n1[label = "make", c];\n\t1 -> 0\n'
    second = '0[label = "make", c];\n1[label = "all", c];\n\t0 -> 1\n'
    assert _rule_edges(first) == _rule_edges(second) == ({"all", "make"}, {("make", "all")})
    assert _rule_edges(first) != _rule_edges('0[label = "all", c];\n1[label = "make", c];\n0 -> 1')


def test_readme_links_only_existing_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for name in ("docs/method.md", "docs/results.md", "docs/rulegraph.png", "docs/slurm.md"):
        assert name in readme and (REPO / name).exists(), name


def test_relative_links_of_the_docs_resolve() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert len(pages) > 10 and not broken, broken


def _tables() -> dict[str, pd.DataFrame]:
    rows = []
    for seed, packd in ((1, 0.62), (2, 0.64)):
        for method, f1, params in (("teacher", 0.70, 100_000), ("packd", packd, 1_000),
                                   ("no_kd", 0.60, 1_000)):  # fmt: skip
            rows.append({"seed": seed, "app": "bc", "arch": "lstm", "method": method, "f1": f1,
                         "params": params, "protocol": "validation"})  # fmt: skip
    main = pd.DataFrame(rows)
    summary = pd.DataFrame(
        [
            {
                "app": "mean",
                "arch": "all",
                "teacher": 0.70,
                "teacher_sd": 0.0,
                "packd": 0.63,
                "packd_sd": 0.0141,
                "no_kd": 0.60,
                "no_kd_sd": 0.0,
            }
        ]  # fmt: skip
    )
    significance = pd.DataFrame(
        [
            {
                "comparison": "packd - no_kd",
                "arch": "all",
                "seeds": 2,
                "mean_f1_difference": 0.03,
                "sd_over_seeds": 0.0141,
                "ci95_low": -0.097,
                "ci95_high": 0.157,
                "p_value": 0.205,
                "p_holm": 0.41,
                "significant_holm": False,
                "holm_tests": 2,
            },
            {
                "comparison": "teacher - no_kd",
                "arch": "all",
                "seeds": 2,
                "mean_f1_difference": 0.1,
                "sd_over_seeds": 0.0,
                "ci95_low": 0.1,
                "ci95_high": 0.1,
                "p_value": float("nan"),
                "p_holm": float("nan"),
                "significant_holm": False,
                "holm_tests": 2,
            },
            {
                "comparison": "packd - standard_kd",
                "arch": "all",
                "seeds": 2,
                "mean_f1_difference": 0.02,
                "sd_over_seeds": 0.00002,
                "ci95_low": 0.0198,
                "ci95_high": 0.0202,
                "p_value": 0.0006,
                "p_holm": 0.0012,
                "significant_holm": True,
                "holm_tests": 2,
            },
        ]  # fmt: skip
    )
    ceiling = pd.DataFrame(
        [
            {
                "seed": 1,
                "app": "bc",
                "arch": "lstm",
                "teacher_val_f1": 0.5,
                "teacher_is_ceiling": False,
                "teacher_not_above": "mlp",
            }
        ]  # fmt: skip
    )
    selection = pd.DataFrame(
        [
            {"seed": 1, "app": "bc", "arch": "lstm", "method": "no_kd", "lr_factor": 1.0,
             "val_f1": 0.41, "chosen": False, "chosen_on_seed": 1},
            {"seed": 1, "app": "bc", "arch": "lstm", "method": "no_kd", "lr_factor": 2.0,
             "val_f1": 0.43, "chosen": True, "chosen_on_seed": 1},
            {"seed": 2, "app": "bc", "arch": "lstm", "method": "no_kd", "lr_factor": 2.0,
             "val_f1": 0.42, "chosen": True, "chosen_on_seed": 1},
        ]
    )  # fmt: skip
    empty = pd.DataFrame()
    return {"main": main, "main_summary": summary, "significance": significance,
            "ceiling": ceiling, "selection": selection, "compression": empty,
            "prefetch": empty}  # fmt: skip


def test_results_document_reads_its_numbers_from_the_tables() -> None:
    document = render_results("config.yaml", _tables(), 125.0, 300.0)
    assert "0.6300 ± 0.0141" in document  # the summary's mean and sd over seeds
    assert (
        "| packd - no_kd | all | 2 | 0.0300 | 0.0141 | [-0.0970, 0.1570] | 0.205 | 0.410 | no |"
        in document
    )
    assert "Holm's step-down adjustment over all 2 tests" in document
    # sd 0: no test, said so, not a p of 0; a tiny sd and p are not printed as 0.0000 and 0.000
    assert "| 0.0000 | [0.1000, 0.1000] | n/a (sd 0) | n/a (sd 0) | n/a (sd 0) |" in document
    assert "| 2.0e-05 | [0.0198, 0.0202] | 6.0e-04 | 1.2e-03 | yes |" in document
    assert "Teacher / student parameters: lstm 100x" in document
    assert "in 0 of 1 (seed, app, arch) cells" in document
    # every method's learning-rate choice on the first seed, with each candidate's figure
    assert "| bc | lstm | no KD | x1: 0.4100, x2: 0.4300 | x2 |" in document
    assert "**Not the ceiling**: seed 1, bc/lstm: not above mlp" in document
    # gap 0.10 in both seeds; PaCKD closes 0.02/0.10 and 0.04/0.10: 30% on average
    assert "gap (mean over cells): 0.1000" in document and "closes 30% of it" in document
    assert "2.1 min from its first job's start" in document


def _learnability(cells: dict[int, dict[str, tuple[float, float]]]) -> pd.DataFrame:
    """The learnability table of bc/lstm per seed, each method's (F1, top-k differs), as the
    results_doc rule reads it back from its CSV."""
    rows = [
        {"seed": seed, "app": "bc", "arch": "lstm", "method": method, "f1": f1, "val_f1": f1,
         "top_k_differs_from_frequency": differs, "protocol": "validation"}
        for seed, methods in cells.items()
        for method, (f1, differs) in methods.items()
    ]  # fmt: skip
    table = learnability_table(pd.DataFrame(rows))
    return pd.read_csv(io.StringIO(table.to_csv(index=False)))


def test_results_document_flags_cells_collapsed_to_the_label_prior() -> None:
    tables = _tables()
    # Seed 1 learned; seed 2's teacher issues the prior's top-k on 97% of samples
    tables["learnability"] = _learnability(
        {1: {"teacher": (0.70, 0.6), "no_kd": (0.60, 0.4)},
         2: {"teacher": (0.70, 0.03), "no_kd": (0.60, 0.01)}}
    )  # fmt: skip
    document = render_results("config.yaml", tables, 125.0, 300.0)
    section = document[document.index("## Learnability check") :]
    assert (
        "**1 of 2 cells rank the prior's top-k first**: seed 2 bc/lstm (the frequency "
        "baseline's on 97.0% of samples)." in section
    )
    # The run has no frequency model (main: teacher, packd, no_kd): its gaps are n/a, said so,
    # and no cell can be checked for collapse
    assert "**No `frequency` model in this run**: the teacher - bit frequency gaps" in section
    assert "**2 of 2 cells could not be checked for collapse**" in section
    assert "None of the" not in section
    assert "| 2 | bc/lstm | n/a | 0.1000 | n/a | 0.1000 | 3.0% | 1.0% | no | **yes** |" in section
    assert "| 1 | bc/lstm | n/a | 0.1000 | n/a | 0.1000 | 60.0% | 40.0% | no | no |" in section
    assert "| mean (cells) | | n/a (0) | 0.1000 (2) | n/a (0) | 0.1000 (2) | 31.5% (2) |" in section
    # With a frequency model: seed 2 barely beats it in F1 and has collapsed
    tables["learnability"] = _learnability(
        {1: {"teacher": (0.70, 0.6), "frequency": (0.50, 0.0), "no_kd": (0.60, 0.4)},
         2: {"teacher": (0.505, 0.5), "frequency": (0.50, 0.0), "no_kd": (0.60, 0.01)}}
    )  # fmt: skip
    section = render_results("config.yaml", tables, 125.0, 300.0)
    assert (
        "**1 of 2 cells have collapsed to the label prior**: seed 2 bc/lstm (test F1 only "
        "+0.0050 above the frequency baseline)." in section
    )
    assert "rank the prior's top-k first" not in section
    assert "`learnability.md`" in document
    # Near the ceiling check: right after it
    assert document.index("## Are the teachers the ceiling?") < document.index(
        "## Learnability check"
    )


def test_results_document_says_when_no_cell_has_collapsed() -> None:
    tables = _tables()
    tables["learnability"] = _learnability(
        {1: {"teacher": (0.70, 0.6), "frequency": (0.50, 0.0), "no_kd": (0.60, 0.4)}}
    )
    tables["main"] = pd.concat(
        [tables["main"], tables["main"].head(1).assign(method="frequency", f1=0.5, params=256)]
    )
    tables["main_summary"] = tables["main_summary"].assign(frequency=0.5, frequency_sd=0.0)
    document = render_results("config.yaml", tables, 125.0, 300.0)
    assert "None of the 1 cells has collapsed to the label prior." in document
    assert "have collapsed" not in document and "No `frequency` model" not in document
    row = "| 1 | bc/lstm | 0.2000 | 0.1000 | 0.2000 | 0.1000 | 60.0% | 40.0% | no | no |"
    assert row in document
    # Neither the top-k comparison nor a frequency model: the check cannot run, and says so
    tables = _tables()
    tables["learnability"] = _learnability(
        {1: {"teacher": (0.70, float("nan")), "no_kd": (0.60, float("nan"))}}
    )
    document = render_results("config.yaml", tables, 125.0, 300.0)
    assert "**1 of 1 cells could not be checked for collapse**" in document
    assert "**Top-k comparison missing**" in document
    assert "None of the" not in document


@pytest.mark.parametrize("missing", ["main", "main_summary"])
def test_results_document_needs_the_main_tables(missing: str) -> None:
    tables = _tables()
    del tables[missing]
    with pytest.raises(KeyError):
        render_results("config.yaml", tables, 1.0, 1.0)


def test_frontier_page_reads_its_numbers_from_the_table() -> None:
    table = pd.DataFrame(
        [
            {
                "arch": "lstm",
                "method": "roast",
                "budget_factor": 0.5,
                "params": 2816.0,
                "f1": 0.41234,
                "f1_sd": 0.0123,
                "seeds": 2,
                "above_budget": True,
            },
            {
                "arch": "resnet",
                "method": "no_kd",
                "budget_factor": 4.0,
                "params": 6400.0,
                "f1": 0.5,
                "f1_sd": float("nan"),
                "seeds": 2,
            },
        ]  # fmt: skip
    )
    page = render_frontier("config.yaml", table, 90.0, 600.0, concurrency=2)
    assert "| ROAST | 0.5 | 2,816 (above: smallest) | 0.4123 | 0.0123 |" in page
    assert "ran at the smallest budget that holds them" in page
    assert "| no KD | 4 | 6,400 | 0.5000 | n/a |" in page
    assert page.index("## lstm") < page.index("## resnet")
    assert "sd over 2 seed(s)" in page
    assert "1.5 min from its first job's start" in page and "at most 2 jobs at once" in page
    assert "adds up to 10.0 min" in page


def test_frontier_time_counts_only_the_frontiers_own_jobs() -> None:
    frontier_only = [Path("logs/students/seed2/bc/lstm/roast-x0.5.log"),
                     Path("logs/evaluate/seed1/bc/lstm/roast-x0.5.log"),
                     Path("logs/students/seed1/bc/lstm/grid/roast-x0.5/lr2.log"),
                     Path("logs/students/seed1/bc/lstm/roast-x0.5.select.log"),
                     Path("logs/blockwise/seed1/bc/lstm/block0.log")]  # fmt: skip
    default_run = [Path("logs/students/seed1/bc/lstm/roast.log"),
                   Path("logs/students/seed1/bc/lstm/grid/packd/lr1.log"),
                   Path("logs/students/seed1/bc/lstm/no_kd.select.log")]  # fmt: skip
    benchmarks = [Path("benchmarks/students/seed1/bc/lstm/grid/roast-x0.5/lr1.tsv"),
                  Path("benchmarks/blockwise/seed1/bc/lstm/activations.tsv"),
                  Path("benchmarks/students/seed1/bc/lstm/no_kd.tsv")]  # fmt: skip
    own_logs, own_benchmarks = frontier_logs_and_benchmarks(
        frontier_only + default_run, benchmarks, ["roast-x0.5", "blockwise"]
    )
    assert own_logs == frontier_only and own_benchmarks == benchmarks[:2]


def test_sweeps_time_counts_only_the_sweeps_own_jobs() -> None:
    sweep_only = [Path("logs/students/seed1/bc/lstm/packd-a-k4-alpha0.5-T1.log"),
                  Path("logs/evaluate/seed1/bc/lstm/packd-a-k3-alpha0.1-T5.log"),
                  Path("logs/cluster/seed1/cluster-bc-a-k4.log"),
                  Path("logs/teachers/seed1/bc/lstm/d-k3/c2.log"),
                  Path("logs/paper/sweep_k.log")]  # fmt: skip
    default_run = [Path("logs/cluster/seed1/cluster-bc-a-k3.log"),
                   Path("logs/teachers/seed1/bc/lstm/a-k3/c0.log"),
                   Path("logs/students/seed1/bc/lstm/packd.log"),
                   Path("logs/students/seed1/bc/lstm/roast-x4.log")]  # fmt: skip
    benchmarks = [Path("benchmarks/cluster/seed1/cluster-bc-i-k3.tsv"),
                  Path("benchmarks/cluster/seed1/cluster-bc-a-k3.tsv")]  # fmt: skip
    logs, own_benchmarks = sweep_logs_and_benchmarks(sweep_only + default_run, benchmarks, "a-k3")
    assert logs == sweep_only and own_benchmarks == benchmarks[:1]


def test_sweeps_page_averages_each_setting_over_apps_and_seeds() -> None:
    rows = [(1, "bc", "lstm", 2, 0.40), (2, "bc", "lstm", 2, 0.42), (1, "pr", "lstm", 2, 0.50),
            (1, "bc", "lstm", 3, 0.30), (1, "bc", "resnet", 2, 0.60),
            (2, "bc", "resnet", 2, 0.70)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["seed", "app", "arch", "k", "f1"])
    table["features"], table["alpha"], table["temperature"] = "a", 0.5, 1.0
    page = render_sweeps("config.yaml", {"k": table}, 120.0, 300.0, concurrency=2)
    assert "## Number of clusters k" in page and "2 seed(s)" in page
    # k = 2: lstm mean of 0.40, 0.42, 0.50; resnet of 0.60, 0.70; all five cells together
    # ± the sd over seeds of each seed's mean over apps: lstm 0.45 (bc, pr) and 0.42 (bc);
    # resnet 0.60 and 0.70; all cells 0.50 and 0.56. One seed at k = 3: no sd.
    assert "| k | F1, lstm | F1, resnet | F1, mean | seeds |" in page
    assert "| 2 | 0.4400 ± 0.0212 | 0.6500 ± 0.0707 | 0.5240 ± 0.0424 | 2 |" in page
    assert "| 3 | 0.3000 | n/a | 0.3000 | 1 |" in page
    assert "`sweeps (after the default run)`: 2.0 min" in page and "adds up to 5.0 min" in page


def test_blockwise_sizes_page_is_config_yamls() -> None:
    """docs/benchmarks/blockwise_sizes.md must hold what its script prints for config.yaml now;
    rewrite it with the command on its first line after changing model or blockwise sizes."""
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks_scripts/blockwise_sizes.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    page = (REPO / "docs/benchmarks/blockwise_sizes.md").read_text()
    assert "Per block at width" in completed.stdout
    assert completed.stdout.strip() in page, "docs/benchmarks/blockwise_sizes.md is stale"


def test_run_times_splice_into_the_readme_and_the_committed_readme_is_current() -> None:
    readme = f"intro\n{README_START}\nold line\n{README_END}\noutro\n"
    pages = ["# R\n" + run_time_line("all", 60.0, 120.0, 2), "- Run time elsewhere: no"]
    spliced = splice_run_times(readme, pages)
    assert "old line" not in spliced and spliced.startswith("intro\n")
    assert (
        "`all`: 1.0 min" in spliced
        and "at most 2 jobs at once" in spliced
        and spliced.endswith(f"{README_END}\noutro\n")
    )
    assert "elsewhere" not in spliced
    with pytest.raises(ValueError, match="run-time block"):
        splice_run_times("no markers", pages)
    # The README's times are the committed pages': `make results-doc` wrote them, none by hand
    committed = (REPO / "README.md").read_text()
    pages = [(REPO / name).read_text()
             for name in ("docs/results.md", "docs/frontier.md", "docs/sweeps.md")
             if (REPO / name).exists()]  # fmt: skip
    assert splice_run_times(committed, pages) == committed


def test_run_time_and_peak_concurrency_come_from_the_job_records(tmp_path: Path) -> None:
    # Three jobs of 10 s ending at t = 10, 15 and 30: the first two overlap, the third runs alone
    for name, end in (("a", 10.0), ("b", 15.0), ("c", 30.0)):
        log = tmp_path / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text("")
        os.utime(log, (1000 + end, 1000 + end))
        benchmark = tmp_path / "benchmarks" / f"{name}.tsv"
        benchmark.parent.mkdir(exist_ok=True)
        benchmark.write_text("s\th:m:s\n10.0\t0:00:10\n")
    logs = sorted((tmp_path / "logs").glob("*.log"))
    benchmarks = sorted((tmp_path / "benchmarks").glob("*.tsv"))
    assert run_wall_seconds(logs, benchmarks) == pytest.approx(30.0)
    assert peak_concurrency(logs, benchmarks) == 2  # a and b overlap for 5 s
    assert peak_concurrency(logs, benchmarks, min_seconds=6.0) == 1
    assert peak_concurrency(logs[2:], benchmarks[2:]) == 1
    assert run_time_figures(logs, benchmarks) == (pytest.approx(30.0), pytest.approx(30.0), 2)


def test_the_default_runs_time_leaves_out_later_targets_jobs(tmp_path: Path) -> None:
    for name, end in (("all_job", 10.0), ("frontier_job", 50.0)):
        log = tmp_path / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text("")
        os.utime(log, (end, end))
        (tmp_path / "benchmarks").mkdir(exist_ok=True)
        (tmp_path / "benchmarks" / f"{name}.tsv").write_text("s\n5.0\n")
    logs, benchmarks = records_until(
        sorted((tmp_path / "logs").glob("*.log")),
        sorted((tmp_path / "benchmarks").glob("*.tsv")),
        cutoff=20.0,
    )
    assert [path.stem for path in logs] == ["all_job"]
    assert [path.stem for path in benchmarks] == ["all_job"]
