"""A real single-node SLURM cluster on the local machine, for tests.

``LocalSlurmCluster`` brings up munge (if no munge daemon answers), ``slurmctld`` and ``slurmd``
from the distribution's packages (Debian 12: slurm 22.05) with a configuration written to a
scratch folder, and stops exactly the daemons it started (by PID) on exit.

Requirements: root (the daemons drop to the ``slurm``/``munge`` users themselves) and either the
binaries already installed or ``apt-get`` available (see :func:`install_slurm`).

Usage::

    with LocalSlurmCluster(tmp_path) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env, check=True)
        cluster.wait_for_jobs()
        print(cluster.completed_jobs())
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
MUNGED = "/usr/sbin/munged"
APT_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
REQUIRED_BINARIES = [SLURMCTLD, SLURMD, MUNGED, "sbatch", "squeue", "sinfo", "scontrol", "munge"]

# Client commands that get a wrapper exporting SLURM_CONF (see LocalSlurmCluster.env).
CLIENT_COMMANDS = ("srun", "sbatch", "squeue", "scontrol", "sinfo", "scancel", "sacct", "salloc")

MUNGE_DIRS = ("/run/munge", "/var/log/munge", "/var/lib/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")


class SlurmClusterError(RuntimeError):
    """The local cluster could not be brought up (the message carries the daemon log tails)."""


def _have(binary: str) -> bool:
    return Path(binary).exists() if binary.startswith("/") else shutil.which(binary) is not None


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if not _have(b)]


def install_slurm() -> None:
    """Install slurmctld, slurmd, the client commands and munge with apt, only if missing."""
    if not missing_binaries():
        return
    if os.geteuid() != 0:
        raise SlurmClusterError(
            f"SLURM binaries missing ({missing_binaries()}) and not root: cannot apt-get install"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
        check=True,
        env=env,
        timeout=900,
    )
    if missing_binaries():
        raise SlurmClusterError(f"still missing after apt-get install: {missing_binaries()}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text[-lines:])


def _world_traversable(path: Path) -> bool:
    """True when every ancestor of ``path`` lets other users (here: ``slurm``) through."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def munge_answers(env: dict[str, str] | None = None) -> bool:
    """True when a munge daemon answers (``munge -n`` succeeds; ``pgrep`` lies about zombies)."""
    try:
        r = subprocess.run(["munge", "-n"], capture_output=True, env=env, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def detect_node() -> dict[str, int]:
    """Hardware as ``slurmd -C`` sees it (CPUs, topology, RealMemory in MB)."""
    out = subprocess.run([SLURMD, "-C"], capture_output=True, text=True, timeout=30).stdout
    values = dict(re.findall(r"(\w+)=(\d+)", out))
    node = {k: int(v) for k, v in values.items()}
    node.setdefault("CPUs", os.cpu_count() or 1)
    if "RealMemory" not in node:
        node["RealMemory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return node


@dataclass
class SlurmJob:
    """One job as recorded by ``jobcomp/filetxt`` (plus the comment squeue still remembers).

    Submissions that the controller rejected are recorded too, as ``FAILED`` on no node.
    """

    job_id: int
    name: str
    state: str
    partition: str
    exit_code: str
    fields: dict[str, str] = field(repr=False, default_factory=dict)
    comment: str = ""

    @property
    def rule(self) -> str | None:
        """The Snakemake rule, from the plugin's ``--comment rule_<name>[_wildcards_...]``."""
        m = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", self.comment)
        return m.group(1) if m else None


class LocalSlurmCluster:
    """Context manager for a one-node SLURM cluster (slurmctld + slurmd + munge if needed).

    ``cpus`` defaults to the machine's (with its topology); a larger value oversubscribes the
    machine on purpose. ``mem_mb`` defaults to 90% of the memory ``slurmd -C`` reports.
    ``workdir`` receives copies of the configuration and daemon logs. The daemons' own scratch
    folder (state, spool, logs, pid files, ``slurm.conf``) must be reachable by the ``slurm``
    user: it is ``workdir/slurm`` when every parent of ``workdir`` is world-traversable, otherwise
    a fresh folder under ``/tmp`` that is removed on exit (after copying the logs to ``workdir``).
    """

    def __init__(
        self,
        workdir: Path,
        cpus: int | None = None,
        mem_mb: int | None = None,
        gpus: int = 0,
        partition: str = "compute",  # the partition named in profiles/slurm
        startup_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.cpus = cpus
        self.mem_mb = mem_mb
        self.gpus = gpus
        self.partition = partition
        self.startup_timeout = startup_timeout
        self.nodename = socket.gethostname().split(".")[0]
        self.scratch: Path | None = None
        self._scratch_is_temp = False
        self._procs: dict[str, subprocess.Popen] = {}
        self._old_env: dict[str, str | None] = {}
        self.started_pids: dict[str, int] = {}
        self.bringup_seconds: float | None = None

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        assert self.scratch is not None, "cluster not started"
        return self.scratch / "slurm.conf"

    @property
    def jobcomp_log(self) -> Path:
        assert self.scratch is not None, "cluster not started"
        return self.scratch / "jobcomp.log"

    @property
    def bindir(self) -> Path:
        """Wrappers of the client commands that set ``SLURM_CONF`` themselves."""
        assert self.scratch is not None, "cluster not started"
        return self.scratch / "bin"

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands and Snakemake subprocesses.

        ``SLURM_CONF`` points at our configuration, and ``PATH`` starts with :attr:`bindir`:
        the Snakemake SLURM jobstep executor strips every ``SLURM_*`` variable before it calls
        ``srun`` inside a job, and without ``/etc/slurm/slurm.conf`` that ``srun`` would find
        no configuration. The wrappers put it back.
        """
        path = os.environ.get("PATH", os.defpath)
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": f"{self.bindir}:{path}"}

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalSlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        if os.geteuid() != 0:
            raise SlurmClusterError("LocalSlurmCluster must run as root")
        install_slurm()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_scratch()
        self._ensure_munge()
        self._write_config()
        self._old_env["SLURM_CONF"] = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.conf)
        self._write_wrappers()
        self._spawn("slurmctld", [SLURMCTLD, "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [SLURMD, "-D", "-f", str(self.conf), "-N", self.nodename])
        self._wait_idle()
        self.bringup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Cancel our jobs, stop the daemons we started (by PID) and wait for them to exit."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self._cancel_all_jobs()
        # slurmd first (it talks to slurmctld on shutdown), then slurmctld, then munged.
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.get(name)
            if proc is not None:
                self._terminate(name, proc)
        self._procs.clear()
        for key, old in self._old_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._old_env.clear()
        if self.scratch is not None and self._scratch_is_temp:
            self._copy_logs()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self._scratch_is_temp = False

    # ----------------------------------------------------------------- helpers
    def _make_scratch(self) -> None:
        if _world_traversable(self.workdir):
            self.scratch = self.workdir / "slurm"
            self.scratch.mkdir(exist_ok=True)
        else:
            self.scratch = Path(tempfile.mkdtemp(prefix="packd-slurm-"))
            self._scratch_is_temp = True
        slurm = pwd.getpwnam("slurm")
        for sub in ("", "state", "spool", "log"):
            d = self.scratch / sub
            d.mkdir(exist_ok=True)
            os.chown(d, slurm.pw_uid, slurm.pw_gid)
            d.chmod(0o755)

    def _copy_logs(self) -> None:
        assert self.scratch is not None
        dest = self.workdir / "slurm-logs"
        dest.mkdir(exist_ok=True)
        for p in [*self.scratch.glob("*.conf"), *self.scratch.glob("*.log")]:
            with contextlib.suppress(OSError):
                shutil.copy(p, dest / p.name)
        for p in (self.scratch / "log").glob("*"):
            with contextlib.suppress(OSError):
                shutil.copy(p, dest / p.name)

    def _ensure_munge(self) -> None:
        if munge_answers():
            return
        munge = pwd.getpwnam("munge")
        gid = grp.getgrnam("munge").gr_gid
        for d in MUNGE_DIRS:
            Path(d).mkdir(parents=True, exist_ok=True)
            os.chown(d, munge.pw_uid, gid)
            Path(d).chmod(0o755 if d == "/run/munge" else 0o700)
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(128))
        os.chown(MUNGE_KEY, munge.pw_uid, gid)
        MUNGE_KEY.chmod(0o400)
        MUNGE_KEY.parent.chmod(0o700)
        os.chown(MUNGE_KEY.parent, munge.pw_uid, gid)
        # -F: stay in the foreground, so the Popen PID is the daemon's PID.
        # --force: take over a stale socket left by a daemon that died.
        self._spawn(
            "munged",
            [MUNGED, "-F", "--force"],
            user=munge.pw_uid,
            group=gid,
        )
        deadline = time.monotonic() + 15
        while not munge_answers():
            if self._procs["munged"].poll() is not None or time.monotonic() > deadline:
                raise SlurmClusterError("munged did not come up:\n" + self._logs())
            time.sleep(0.1)

    def _write_config(self) -> None:
        assert self.scratch is not None
        s = self.scratch
        node = detect_node()
        if self.cpus is None:
            topo = " ".join(
                f"{k}={node[k]}"
                for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                if k in node
            )
        else:
            topo = f"CPUs={self.cpus}"
        # More CPUs than the machine has: oversubscribe on purpose (short, mostly idle jobs
        # such as Snakemake's per-job start-up). slurmd would otherwise drain the node.
        oversubscribe = self.cpus is not None and self.cpus > node["CPUs"]
        total = node["RealMemory"]
        mem = self.mem_mb if self.mem_mb is not None else max(256, int(total * 0.9))
        if mem > total:
            raise SlurmClusterError(f"mem_mb={mem} exceeds the machine's {total} MB")
        gres_node = ""
        (s / "plugstack.conf").write_text("")
        lines = [
            "# Written by tests/slurm/local_cluster.py: single-node test cluster.",
            "ClusterName=packdtest",
            f"SlurmctldHost={self.nodename}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CryptoType=crypto/munge",
            "SlurmUser=slurm",
            "SlurmdUser=root",
            f"StateSaveLocation={s / 'state'}",
            f"SlurmdSpoolDir={s / 'spool'}",
            f"SlurmctldPidFile={s / 'slurmctld.pid'}",
            f"SlurmdPidFile={s / 'slurmd.pid'}",
            f"SlurmctldLogFile={s / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={s / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            # A durable record of every job that went through the controller.
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={s / 'jobcomp.log'}",
            # Finished jobs stay visible to `squeue --states=all` for an hour: the Snakemake
            # plugin's squeue status check relies on it (it wants >= 3x its first check delay),
            # and the tests read each job's rule from its squeue comment after the whole run.
            "MinJobAge=3600",
            # Jobs that ask for no memory get this much per CPU instead of the whole node.
            "DefMemPerCPU=512",
            "ReturnToService=2",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            "Waittime=0",
            *(["SlurmdParameters=config_overrides"] if oversubscribe else []),
            f"PlugStackConfig={s / 'plugstack.conf'}",  # none: keep the system's SPANK out
            "MailProg=/bin/true",
        ]
        if self.gpus > 0:
            lines.append("GresTypes=gpu")
            gres_node = f" Gres=gpu:{self.gpus}"
            # Fake devices: one empty file per GPU (slurm wants a File per gpu; nothing opens it).
            files = []
            for i in range(self.gpus):
                (s / f"gpu{i}").touch()
                files.append(str(s / f"gpu{i}"))
            gres = [
                "AutoDetect=off",
                f"NodeName={self.nodename} Name=gpu File={','.join(files)}",
            ]
            (s / "gres.conf").write_text("\n".join(gres) + "\n")
        lines += [
            f"NodeName={self.nodename} NodeAddr=127.0.0.1 {topo} RealMemory={mem}"
            f"{gres_node} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.nodename} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _write_wrappers(self) -> None:
        self.bindir.mkdir(exist_ok=True)
        for cmd in CLIENT_COMMANDS:
            real = shutil.which(cmd)  # os.environ's PATH: never our wrappers
            if real is None:
                continue
            w = self.bindir / cmd
            w.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {real} "$@"\n')
            w.chmod(0o755)

    def _spawn(self, name: str, cmd: list[str], **kwargs) -> None:
        assert self.scratch is not None
        out = open(self.scratch / "log" / f"{name}.stdout", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SLURM_CONF": str(self.conf)},
                start_new_session=True,  # a Ctrl-C in pytest does not hit the daemons first
                **kwargs,
            )
        finally:
            out.close()
        self._procs[name] = proc
        self.started_pids[name] = proc.pid

    def _terminate(self, name: str, proc: subprocess.Popen, timeout: float = 20) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)

    def _logs(self) -> str:
        if self.scratch is None:
            return "<no scratch folder>"
        parts = []
        for p in sorted((self.scratch / "log").glob("*")):
            parts.append(f"--- {p.name} (last lines) ---\n{_tail(p)}")
        return "\n".join(parts)

    def _run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise SlurmClusterError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        state = ""
        while time.monotonic() < deadline:
            for name in ("slurmctld", "slurmd"):
                if self._procs[name].poll() is not None:
                    raise SlurmClusterError(
                        f"{name} exited with {self._procs[name].returncode}:\n" + self._logs()
                    )
            r = subprocess.run(
                ["sinfo", "--noheader", "--nodes", self.nodename, "--format", "%T"],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=15,
            )
            state = r.stdout.strip()
            if r.returncode == 0 and state == "idle":
                return
            time.sleep(0.2)
        raise SlurmClusterError(
            f"node {self.nodename} not idle after {self.startup_timeout}s "
            f"(sinfo: {state!r}):\n" + self._logs()
        )

    def _cancel_all_jobs(self) -> None:
        ids = self._run("squeue", "--noheader", "--format", "%i", check=False).split()
        if ids:
            self._run("scancel", *ids, check=False)
            self.wait_for_jobs(timeout=30, raise_on_timeout=False)

    # ------------------------------------------------------------- job queries
    def squeue(self, states: str = "all") -> list[dict[str, str]]:
        """Jobs the controller still remembers (finished ones for ``MinJobAge`` seconds)."""
        out = self._run("squeue", "--noheader", f"--states={states}", "--format", "%i|%j|%T|%P|%k")
        rows = []
        for line in out.splitlines():
            job_id, name, state, partition, comment = line.split("|", 4)
            rows.append(
                {
                    "job_id": job_id,
                    "name": name,
                    "state": state,
                    "partition": partition,
                    "comment": comment,
                }
            )
        return rows

    def wait_for_jobs(self, timeout: float = 120, raise_on_timeout: bool = True) -> bool:
        """Wait until no job is pending or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = [
                j for j in self.squeue() if j["state"] in {"PENDING", "RUNNING", "CONFIGURING"}
            ]
            if not active:
                return True
            time.sleep(0.3)
        if raise_on_timeout:
            raise SlurmClusterError(
                f"jobs still active after {timeout}s: {active}\n" + self._logs()
            )
        return False

    def jobs(self) -> list[SlurmJob]:
        """Every job that finished (in any state), from the ``jobcomp/filetxt`` log."""
        if not self.jobcomp_log.exists():
            return []
        comments = {}
        with contextlib.suppress(SlurmClusterError, subprocess.TimeoutExpired):
            comments = {int(j["job_id"]): j["comment"] for j in self.squeue()}
        jobs = []
        for line in self.jobcomp_log.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" not in fields:
                continue
            job_id = int(fields["JobId"])
            jobs.append(
                SlurmJob(
                    job_id=job_id,
                    name=fields.get("Name", ""),
                    state=fields.get("JobState", ""),
                    partition=fields.get("Partition", ""),
                    exit_code=fields.get("ExitCode", ""),
                    fields=fields,
                    comment=comments.get(job_id, "").replace("(null)", ""),
                )
            )
        return jobs

    def completed_jobs(self) -> list[SlurmJob]:
        return [j for j in self.jobs() if j.state == "COMPLETED"]

    def daemons_alive(self) -> dict[str, bool]:
        """Whether each daemon this instance started is still alive (zombies count as dead)."""
        return {name: _pid_alive(pid) for name, pid in self.started_pids.items()}
