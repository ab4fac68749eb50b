"""The whole DAG on the tiny config, and dry runs of the default and paper-scale configs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from packd.methods import names_with_role
from packd.tables import MAIN_COLUMNS
from tests.conftest import REPO, copy_workflow, run_snakemake

pytestmark = pytest.mark.e2e

TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
MAIN_METHODS = set(TINY["methods"])


def test_main_table_has_every_cell_filled(tiny_run: Path) -> None:
    main = pd.read_csv(tiny_run / "results/tables/main.csv")
    assert list(main.columns[: len(MAIN_COLUMNS)]) == MAIN_COLUMNS
    assert not main.isna().any().any(), main[main.isna().any(axis=1)]
    assert set(main["app"]) == {"pr", "dpc"}
    assert set(main["arch"]) == set(TINY["archs"])
    assert set(main["method"]) == MAIN_METHODS
    assert set(main["protocol"]) == {"validation", "test_selected"}
    assert set(main["seed"]) == {7, 8}
    assert len(main) == 2 * 2 * len(TINY["archs"]) * len(MAIN_METHODS) * 2
    for column in ("f1", "f1_at_0.5", "precision", "recall"):
        assert main[column].between(0, 1).all(), column
    assert main["f1"].nunique() > 1, "every F1 is the same: the models learned nothing distinct"


def test_students_are_smaller_than_teachers(tiny_run: Path) -> None:
    main = pd.read_csv(tiny_run / "results/tables/main.csv")
    rows = main[main["protocol"] == "validation"].set_index(["seed", "app", "arch", "method"])
    for (seed, app, arch, method), row in rows.iterrows():
        if method in names_with_role("student"):
            assert row["params"] < rows.loc[(seed, app, arch, "teacher"), "params"]
            assert row["compression"] > 1


def test_authors_protocol_is_never_below_ours(tiny_run: Path) -> None:
    """Choosing the threshold and epoch on test can only flatter the test F1."""
    main = pd.read_csv(tiny_run / "results/tables/main.csv")
    wide = main.pivot_table(
        index=["seed", "app", "arch", "method"], columns="protocol", values="f1"
    )
    assert (wide["test_selected"] >= wide["validation"] - 1e-9).all()


def test_summary_reports_means_and_gains(tiny_run: Path) -> None:
    summary = pd.read_csv(tiny_run / "results/tables/main_summary.csv")
    mean = summary[(summary["app"] == "mean") & (summary["arch"] == "all")].iloc[0]
    main = pd.read_csv(tiny_run / "results/tables/main.csv")
    validation = main[main["protocol"] == "validation"]
    per_seed = validation.groupby(["method", "seed"])["f1"].mean()
    assert mean["packd"] == pytest.approx(per_seed["packd"].mean())
    assert mean["packd_sd"] == pytest.approx(per_seed["packd"].std(ddof=1))
    standard = per_seed["standard_kd"].mean()
    expected_gain = 100 * (per_seed["packd"].mean() - standard) / standard
    assert mean["packd_vs_standard_kd_%"] == pytest.approx(expected_gain)


def test_significance_takes_the_two_seeds_as_units(tiny_run: Path) -> None:
    significance = pd.read_csv(tiny_run / "results/tables/significance.csv")
    row = significance.set_index(["comparison", "arch"]).loc[("packd - no_kd", "all")]
    assert row["seeds"] == 2 and row["cells"] == 2 * len(TINY["archs"])
    assert row["mean_f1_difference"] == pytest.approx((row["seed7"] + row["seed8"]) / 2)
    assert 0 <= row["p_value"] <= 1
    noise = pd.read_csv(tiny_run / "results/tables/seed_noise.csv").set_index("comparison")
    assert noise.loc["packd - no_kd", "mean_diff_seed7"] == pytest.approx(row["seed7"])


def test_ceiling_and_selection_tables(tiny_run: Path) -> None:
    ceiling = pd.read_csv(tiny_run / "results/tables/ceiling.csv")
    assert len(ceiling) == 2 * 2 * len(TINY["archs"])
    assert {"frequency_val_f1", "mlp_val_f1", "no_kd_val_f1"} <= set(ceiling.columns)
    verdict = ceiling["teacher_val_f1"] > ceiling[
        ["frequency_val_f1", "mlp_val_f1", "no_kd_val_f1"]
    ].max(axis=1)
    assert (verdict == ceiling["teacher_is_ceiling"]).all()
    log = (tiny_run / "logs/paper/table_main.log").read_text()
    assert log.count("TEACHER IS NOT THE CEILING") == int((~verdict).sum())
    selection = pd.read_csv(tiny_run / "results/tables/selection.csv")
    cell = ["seed", "app", "arch", "method"]
    # every trained method of the main table chose from the same grid; frequency has nothing
    tuned = (
        MAIN_METHODS
        - {"frequency", "packd_teachers"}
        - set(name for name in MAIN_METHODS if name.startswith("blockwise"))
    )
    assert set(selection["method"]) == tuned | {"frequency"}
    first, second = TINY["seeds"]
    on_first = selection[selection["seed"] == first]
    for method, rows in on_first.groupby("method"):
        factors = {1.0} if method == "frequency" else {1.0, 2.0}
        assert set(rows["lr_factor"]) == factors, method
    assert (selection.groupby(cell)["chosen"].sum() == 1).all()
    trained = on_first[on_first["method"] != "frequency"]
    best = trained.loc[trained.groupby(cell)["val_f1"].idxmax()]
    assert best["chosen"].all()
    # the frequency baseline trains nothing: no validation F1 from training, not a 0.0
    assert on_first.loc[on_first["method"] == "frequency", "val_f1"].isna().all()
    # The grid runs on the first seed; the second trains once, at the first seed's choice
    assert (selection["chosen_on_seed"] == first).all()
    later = selection[selection["seed"] == second].set_index(cell[1:])["lr_factor"]
    chosen = on_first[on_first["chosen"]].set_index(cell[1:])["lr_factor"]
    assert later.to_dict() == chosen.to_dict()
    # the MLP trained in the teacher's phase: at most the teacher's epochs
    mlp = json.loads((tiny_run / "results/metrics/seed7/pr/lstm/mlp.json").read_text())
    assert len(mlp["histories"][0]) <= TINY["train"]["teacher"]["epochs"]
    # cluster teachers start from the whole-app teacher: epoch 0 is the warm start
    packd_teachers = json.loads(
        (tiny_run / "results/metrics/seed7/pr/lstm/packd_teachers.json").read_text()
    )
    assert all(history[0]["epoch"] == 0 for history in packd_teachers["histories"] if history)


def test_learnability_table_flags_collapsed_cells_in_the_log(tiny_run: Path) -> None:
    table = pd.read_csv(tiny_run / "results/tables/learnability.csv")
    assert len(table) == 2 * 2 * len(TINY["archs"])
    assert table["teacher_top_k_differs"].between(0, 1).all()
    main = pd.read_csv(tiny_run / "results/tables/main.csv")
    frequency = main[(main["method"] == "frequency") & (main["protocol"] == "validation")]
    assert (frequency["top_k_differs_from_frequency"] == 0).all()  # its top-k is the prior's
    log = (tiny_run / "logs/paper/table_learnability.log").read_text()
    assert log.count("COLLAPSED TO THE LABEL PRIOR") == int(table["collapsed"].sum())
    assert log.count("TOP-K IS THE LABEL PRIOR'S") == int(table["top_k_is_prior"].sum())
    document = (tiny_run / "results/results.md").read_text()
    assert "## Learnability check" in document


def test_prefetch_table_has_models_and_classic_prefetchers(tiny_run: Path) -> None:
    table = pd.read_csv(tiny_run / "results/tables/prefetch.csv")
    assert set(table["kind"]) == {"model", "classic"}
    assert set(table.loc[table["kind"] == "classic", "name"]) == {
        "next_line",
        "ip_stride",
        "best_offset",
    }
    assert set(table.loc[table["kind"] == "model", "name"]) == MAIN_METHODS
    assert table["coverage"].between(0, 1).all() and table["accuracy"].between(0, 1).all()
    prefetches = (tiny_run / "results/prefetch/seed7/pr/lstm/packd.txt").read_text().splitlines()
    per_load = pd.Series([line.split()[0] for line in prefetches]).value_counts()
    assert len(prefetches) > 0 and per_load.max() <= 2


def test_metrics_record_device_and_histories(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "results/metrics/seed7/pr/lstm/packd.json").read_text())
    assert metrics["trained_on"] == ["cpu"]
    assert len(metrics["histories"]) == 1 and len(metrics["histories"][0]) >= 1
    assert metrics["latency_b1_s"] > metrics["latency_b1024_s"] > 0


def test_figures_are_images(tiny_run: Path) -> None:
    for figure in (
        "results/figures/main_f1.png",
        "results/figures/training_curves.png",
        "results/traces/pr.png",
        "results/clusters/seed7/pr/a-k2.png",
        "results/figures/prefetch.png",
    ):
        data = (tiny_run / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, figure


def test_report_bundles_the_tables_and_figures(tiny_run: Path) -> None:
    run_snakemake(
        tiny_run, "--configfile", "tests/configs/tiny.yaml", "--report", "results/report.html"
    )
    report = (tiny_run / "results/report.html").read_text(errors="replace")
    for name in (
        "main.csv",
        "main_f1.png",
        "training_curves.png",
        "compression.csv",
        "summary.csv",
        "significance.csv",
        "ceiling.csv",
        "learnability.csv",
        "prefetch.csv",
    ):
        assert name in report, name


def test_a_finished_run_has_nothing_left_to_do(tiny_run: Path) -> None:
    completed = run_snakemake(tiny_run, "-n", "--configfile", "tests/configs/tiny.yaml")
    assert "Nothing to be done" in completed.stdout + completed.stderr


# The default config leaves blockwise distillation to the frontier target; the paper's runs it.
@pytest.mark.parametrize(
    ("configfile", "target"),
    [("config.yaml", "all"), ("config.yaml", "frontier"), ("config/paper.yaml", "all")],
)
def test_dry_run(tmp_path: Path, configfile: str, target: str) -> None:
    workdir = copy_workflow(tmp_path)
    completed = run_snakemake(workdir, target, "-n", "--configfile", configfile)
    rules = ["train_teacher", "train_student", "evaluate_cell"]
    rules += ["prefetch_app"] if target == "all" else []  # the frontier replays no prefetches
    blockwise_planned = "distill_block" in completed.stdout
    assert all(rule in completed.stdout for rule in rules), completed.stdout[-2000:]
    assert blockwise_planned == (configfile != "config.yaml" or target == "frontier")


def test_paper_config_runs_the_sweeps(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    completed = run_snakemake(workdir, "-n", "--configfile", "config/paper.yaml")
    assert "results/figures/f1_vs_k.png" in completed.stdout


def test_sweeps_target_on_tiny(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    completed = run_snakemake(workdir, "sweeps", "-n", "--configfile", "tests/configs/tiny.yaml")
    assert "packd-a-k1-alpha0.5-T1" in completed.stdout
    assert "packd-d-k2-alpha0.5-T1" in completed.stdout
    assert "results/figures/f1_vs_kd.png" in completed.stdout


def test_sweeps_target_writes_its_page_on_the_finished_run(tiny_run: Path) -> None:
    # One seed, one arch and one new clustering (k = 1) keep this to a minute
    sweeps = "sweeps={run: false, k: [1], features: [a], alpha: [0.5], temperature: [1.0]}"
    arguments = ("--configfile", "tests/configs/tiny.yaml", "--config", "seeds=[7]")
    arguments += ("archs=[lstm]", sweeps)
    run_snakemake(tiny_run, "sweeps", "--cores", "2", *arguments)
    k_sweep = pd.read_csv(tiny_run / "results/tables/sweep_k.csv")
    assert set(k_sweep["k"]) == {1} and set(k_sweep["seed"]) == {7}, k_sweep
    assert set(k_sweep["arch"]) == {"lstm"} and len(k_sweep) == 2  # one row per app
    page = (tiny_run / "results/sweeps.md").read_text()
    mean = k_sweep["f1"].mean()
    assert f"| 1 | {mean:.4f} | {mean:.4f} |" in page, page
    assert "Run time of `sweeps (after the default run)`" in page
    # Its time counts only the sweep's own jobs: 2 clusterings (k = 1) and their 2 teachers; 4
    # variant students (k = 1; k = 2 for features and kd), each with 2 learning-rate candidates,
    # a selection and an evaluation; 3 sweep tables
    log = (tiny_run / "logs/paper/sweeps_page.log").read_text()
    assert "23 sweep-only jobs" in log, log


def test_frontier_target_adds_budgets_to_the_finished_run(tiny_run: Path) -> None:
    # Two methods at one more budget keep this to a minute; the main table's models are reused.
    frontier = "frontier={budgets: [1, 4], methods: [no_kd, hashednet]}"
    arguments = ("--configfile", "tests/configs/tiny.yaml", "--config", frontier)
    planned = run_snakemake(tiny_run, "frontier", "-n", *arguments)
    plan = planned.stdout + planned.stderr
    assert "train_student" in plan and "evaluate_cell" not in plan  # x1 comes from the main run
    run_snakemake(tiny_run, "frontier", "--cores", "2", *arguments)
    table = pd.read_csv(tiny_run / "results/tables/frontier.csv")
    points = table.set_index(["arch", "method", "budget_factor"])["params"]
    for arch in ("lstm", "resnet"):
        for method in ("no_kd", "hashednet"):
            assert points[(arch, method, 4.0)] > points[(arch, method, 1.0)], (arch, method)
        # A student sized to 4x its count lands near it (the closest width)
        assert 3.0 < points[(arch, "no_kd", 4.0)] / points[(arch, "no_kd", 1.0)] < 5.0
        assert points[(arch, "teacher", 1.0)] > points[(arch, "hashednet", 4.0)]
    page = (tiny_run / "results/frontier.md").read_text()
    assert "Run time of `frontier" in page and "| HashedNet | 4 |" in page
