"""The local SLURM test cluster comes up, runs a batch job and leaves no daemon behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .local_cluster import LocalSlurmCluster, _pid_alive

pytestmark = pytest.mark.slurm


def test_sbatch_job_completes_and_daemons_stop(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with LocalSlurmCluster(tmp_path) as cluster:
        bringup = time.monotonic() - t0
        pids = dict(cluster.started_pids)
        assert {"slurmctld", "slurmd"} <= pids.keys()
        assert all(cluster.daemons_alive().values())

        out = subprocess.run(
            ["sbatch", "--parsable", "--job-name", "hello", "--wrap", "hostname > out"],
            cwd=tmp_path,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        job_id = int(out.stdout.strip().split(";")[0])
        cluster.wait_for_jobs(timeout=60)

        assert (tmp_path / "out").read_text().strip()
        jobs = {j.job_id: j for j in cluster.jobs()}
        assert job_id in jobs, cluster.jobcomp_log.read_text()
        assert jobs[job_id].state == "COMPLETED"
        assert jobs[job_id].name == "hello"
        assert jobs[job_id].partition == cluster.partition
    print(f"bring-up {bringup:.1f}s, total {time.monotonic() - t0:.1f}s")
    assert bringup < 60

    # Every daemon we started is gone (zombies count as gone: PID 1 reaps them).
    deadline = time.monotonic() + 10
    while any(_pid_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_pid_alive(pid) for pid in pids.values()), pids
    assert not any(cluster.daemons_alive().values())


def test_declared_gpu_is_schedulable(tmp_path: Path) -> None:
    with LocalSlurmCluster(tmp_path, gpus=1) as cluster:

        def sbatch(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["sbatch", "--parsable", "--mem=100", *args, "--wrap", "true"],
                cwd=tmp_path,
                env=cluster.env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        ok = sbatch("--gpus=1")
        assert ok.returncode == 0, ok.stderr
        assert sbatch("--gpus=2").returncode != 0  # more than the node has
        cluster.wait_for_jobs(timeout=60)
        # The rejected submission is logged too (FAILED, on no node); the accepted one ran.
        assert [j.job_id for j in cluster.completed_jobs()] == [int(ok.stdout.split(";")[0])]
