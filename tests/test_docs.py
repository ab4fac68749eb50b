"""Docs that cannot drift: the rule graph is the workflow's, results come from tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from packd.results_doc import render_results
from tests.conftest import REPO, run_snakemake


def test_committed_rule_graph_is_the_workflows(tmp_path: Path) -> None:
    """docs/rulegraph.dot must equal `snakemake --rulegraph`; regenerate with
    `snakemake --cores 1 -f rulegraph`."""
    completed = run_snakemake(
        REPO, "--rulegraph", "--nolock", "--configfile", "config.yaml", "--quiet", "all"
    )
    committed = (REPO / "docs/rulegraph.dot").read_text()
    assert completed.stdout == committed, "docs/rulegraph.dot is stale: run the rulegraph rule"


def test_readme_links_only_existing_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for name in ("docs/method.md", "docs/results.md", "docs/rulegraph.png", "docs/slurm.md"):
        assert name in readme and (REPO / name).exists(), name


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
                "mean_f1_difference": 0.03,
                "sd_over_seeds": 0.0141,
                "ci95_low": -0.097,
                "ci95_high": 0.157,
                "p_value": 0.205,
            }
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
    empty = pd.DataFrame()
    return {"main": main, "main_summary": summary, "significance": significance,
            "ceiling": ceiling, "teacher_selection": empty, "compression": empty,
            "prefetch": empty}  # fmt: skip


def test_results_document_reads_its_numbers_from_the_tables() -> None:
    document = render_results("config.yaml", _tables(), 125.0, 300.0)
    assert "0.6300 ± 0.0141" in document  # the summary's mean and sd over seeds
    assert "| packd - no_kd | all | 0.0300 | 0.0141 | [-0.0970, 0.1570] | 0.205 |" in document
    assert "Teacher / student parameters: lstm 100x" in document
    assert "in 0 of 1 (seed, app, arch) cells" in document
    assert "**Not the ceiling**: seed 1, bc/lstm: not above mlp" in document
    # gap 0.10 in both seeds; PaCKD closes 0.02/0.10 and 0.04/0.10: 30% on average
    assert "gap (mean over cells): 0.1000" in document and "closes 30% of it" in document
    assert "2.1 min from the first job's start" in document


@pytest.mark.parametrize("missing", ["main", "main_summary"])
def test_results_document_needs_the_main_tables(missing: str) -> None:
    tables = _tables()
    del tables[missing]
    with pytest.raises(KeyError):
        render_results("config.yaml", tables, 1.0, 1.0)
