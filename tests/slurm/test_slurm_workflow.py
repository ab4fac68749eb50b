"""Snakemake through profiles/slurm on a real (local) SLURM cluster.

1. A throwaway three-rule workflow proves the mechanism: every non-local job goes through
   sbatch (counted in the cluster's jobcomp log) and the outputs equal a local run's.
2. The real workflow on tests/configs/tiny.yaml, its traced app, one seed, one arch and the
   methods that reach every kind of training job: results/tables/main.csv (accuracy columns)
   equals the same rows of a local run of the whole tiny config.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from .local_cluster import LocalSlurmCluster

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "profiles" / "default"
SNAKEMAKE_TIMEOUT = 1800  # seconds, per Snakemake run (the tiny config has ~190 jobs)
# Short first status check: test jobs take seconds, and the cluster keeps MinJobAge=3600.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5"]

TOY_SNAKEFILE = """
localrules: all

rule all:
    input:
        "results/summary.txt",

rule make:
    output:
        "results/parts/{i}.txt",
    log:
        "logs/make/{i}.log",
    threads: 1
    resources:
        mem_mb=300,
        runtime=5,
    shell:
        "(echo part {wildcards.i} threads={threads}; seq 1 {wildcards.i}) > {output} 2> {log}"

rule square:
    input:
        "results/parts/{i}.txt",
    output:
        "results/squares/{i}.txt",
    log:
        "logs/square/{i}.log",
    threads: 2
    resources:
        mem_mb=400,
        runtime=5,
    shell:
        "(tail -n +2 {input} | awk '{{print $1*$1}}'; echo threads={threads}) > {output} 2> {log}"

rule summary:
    input:
        expand("results/squares/{i}.txt", i=[1, 2]),
    output:
        "results/summary.txt",
    log:
        "logs/summary.log",
    threads: 1
    resources:
        mem_mb=300,
        runtime=5,
    shell:
        "cat {input} > {output} 2> {log}"
"""
TOY_RULES = Counter({"make": 2, "square": 2, "summary": 1})


def _venv_env(env: dict[str, str]) -> dict[str, str]:
    """Make sure `python`/`snakemake` inside the SLURM jobs (sbatch --export=ALL) are ours."""
    bindir = str(Path(sys.executable).parent)
    return {
        **env,
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
        "PYTHONHASHSEED": "0",  # as tests/conftest.py's local run
    }


def run_snakemake(
    workdir: Path, profile: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    # --workflow-profile none: a workflow folder's own profiles/default would otherwise be
    # applied after --profile and override its keys (default-resources among them).
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(profile),
        "--workflow-profile",
        "none",
        "--directory",
        str(workdir),
        *args,
    ]
    r = subprocess.run(
        cmd,
        cwd=workdir,
        env=_venv_env(env or dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=SNAKEMAKE_TIMEOUT,
    )
    if r.returncode != 0:
        pytest.fail(
            f"snakemake failed ({r.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{r.stdout[-5000:]}\n--- stderr ---\n{r.stderr[-15000:]}"
        )
    return r


def executed_rules(log: str) -> Counter:
    """Non-local jobs Snakemake ran, by rule (`rule X:` lines; local ones say `localrule X:`)."""
    return Counter(re.findall(r"^rule (\w+):$", log, flags=re.MULTILINE))


def assert_ran_through_sbatch(cluster: LocalSlurmCluster, first_new_id: int, log: str) -> None:
    rules = executed_rules(log)
    assert rules, f"no job ran?\n{log[-5000:]}"
    jobs = [j for j in cluster.jobs() if j.job_id >= first_new_id]
    assert all(j.state == "COMPLETED" for j in jobs), jobs
    # One sbatch job per Snakemake job, all of them named after this run's UUID.
    assert len(jobs) == sum(rules.values()), (rules, jobs)
    assert len({j.name for j in jobs}) == 1, jobs
    # The plugin tags each job with `--comment rule_<name>`; squeue remembers it for MinJobAge.
    assert Counter(j.rule for j in jobs) == rules, (rules, jobs)


def next_job_id(cluster: LocalSlurmCluster) -> int:
    return max((j.job_id for j in cluster.jobs()), default=0) + 1


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    # 3 job slots per core: every SLURM job starts its own Snakemake (seconds of start-up and
    # status polling around sub-second rules); oversubscribing hides that latency.
    cpus = 3 * (os.cpu_count() or 1)
    with LocalSlurmCluster(tmp_path_factory.mktemp("slurm-cluster"), cpus=cpus) as c:
        yield c


def test_toy_workflow_runs_through_sbatch(cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    for d in (slurm_dir, local_dir):
        d.mkdir()
        (d / "Snakefile").write_text(TOY_SNAKEFILE)

    first = next_job_id(cluster)
    t0 = time.monotonic()
    r = run_snakemake(slurm_dir, SLURM_PROFILE, *FAST_STATUS, env=cluster.env)
    print(f"toy workflow via SLURM: {time.monotonic() - t0:.1f}s")
    log = r.stdout + r.stderr
    assert executed_rules(log) == TOY_RULES, log[-5000:]
    assert_ran_through_sbatch(cluster, first, log)

    run_snakemake(local_dir, DEFAULT_PROFILE, "--cores", "2")
    assert tree(slurm_dir / "results") == tree(local_dir / "results")
    # threads reach the job: `square` asked for 2 CPUs and got them.
    assert b"threads=2" in (slurm_dir / "results/squares/1.txt").read_bytes()


# ------------------------------------------------------------------ the real workflow, tiny config
TINY_CONFIG = "tests/configs/tiny.yaml"
# The tiny config with only its traced app: the trace job compiles and runs a kernel inside a
# SLURM job; the imported app's jobs would add a second copy of every downstream job.
SLURM_APP = "pr"
SLURM_CONFIG = "tests/configs/tiny-slurm.yaml"
# One seed and arch of the tiny config, and the methods that reach every kind of training job
# (cluster teachers, a distilled student, blockwise block jobs): each model's numbers do not
# depend on which other models run, so they must equal the local tiny run's.
SLURM_SUBSET = {"seeds": [7], "archs": ["resnet"], "methods": ["teacher", "packd_teachers",
                "packd", "no_kd", "blockwise_packd"]}  # fmt: skip
SLURM_OVERRIDES = ["--config", *(f"{key}={value}" for key, value in SLURM_SUBSET.items())]
MAIN_TABLE = "results/tables/main.csv"
# Accuracy and size columns; latency and timing columns differ from run to run.
COMPARED_COLUMNS = ["seed", "app", "arch", "method", "protocol", "f1", "params"]


def _workflow_ready() -> str | None:
    """None when the real workflow exists and its dry run on the tiny config succeeds."""
    for part in ("Snakefile", TINY_CONFIG):
        if not (REPO / part).exists():
            return f"{part} does not exist yet"
    return None


@pytest.fixture(scope="module")
def slurm_tiny_run(cluster: LocalSlurmCluster, tmp_path_factory: pytest.TempPathFactory):
    """The tiny config's subset through profiles/slurm; returns (folder, log, first id)."""
    import yaml

    from tests.conftest import copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("tiny-slurm"))
    config = yaml.safe_load((workdir / TINY_CONFIG).read_text())
    config["apps"] = {SLURM_APP: config["apps"][SLURM_APP]}
    (workdir / SLURM_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", SLURM_CONFIG, *SLURM_OVERRIDES],
        cwd=workdir,
        env=_venv_env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if dry.returncode != 0:
        pytest.fail(f"dry run of the tiny config failed:\n{dry.stdout[-3000:]}{dry.stderr[-5000:]}")
    first = next_job_id(cluster)
    t0 = time.monotonic()
    r = run_snakemake(
        workdir,
        workdir / "profiles" / "slurm",
        *FAST_STATUS,
        "--configfile",
        SLURM_CONFIG,
        *SLURM_OVERRIDES,
        env=cluster.env,
    )
    print(f"tiny config via SLURM: {time.monotonic() - t0:.1f}s")
    return workdir, r.stdout + r.stderr, first


def _main_table(run_dir: Path):
    import pandas as pd

    table = pd.read_csv(run_dir / MAIN_TABLE)
    missing = set(COMPARED_COLUMNS) - set(table.columns)
    assert not missing, f"{MAIN_TABLE} lacks {missing}: {list(table.columns)}"
    table = table[
        (table["app"] == SLURM_APP)
        & table["seed"].isin(SLURM_SUBSET["seeds"])
        & table["arch"].isin(SLURM_SUBSET["archs"])
        & table["method"].isin(SLURM_SUBSET["methods"])
    ]
    keys = ["seed", "app", "arch", "method", "protocol"]
    return table[COMPARED_COLUMNS].sort_values(keys).reset_index(drop=True)


@pytest.mark.skipif(_workflow_ready() is not None, reason=str(_workflow_ready()))
def test_tiny_workflow_via_slurm_matches_local(
    cluster: LocalSlurmCluster, slurm_tiny_run, tiny_run: Path
) -> None:
    """The real workflow through profiles/slurm: every job via sbatch, same table as locally."""
    import pandas.testing as pdt

    slurm_dir, log, first = slurm_tiny_run
    assert_ran_through_sbatch(cluster, first, log)
    # Each replacement block of a teacher is its own SLURM job: the tiny ResNet teacher has 2
    # stages.
    jobs = [job for job in cluster.jobs() if job.job_id >= first]
    assert Counter(job.rule for job in jobs)["distill_block"] == 2, jobs
    pdt.assert_frame_equal(
        _main_table(slurm_dir), _main_table(tiny_run), check_exact=False, rtol=1e-6
    )
