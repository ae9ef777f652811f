"""A run whose worker is SIGKILLed does not stay STARTED nor keep its ``duckdb`` pool slot.

A real instance from the generated dagster.yaml, a real ``dagster-daemon`` (run queue, run
monitoring), a real code server and run worker; the step holds the pool slot when the worker
and its code server are killed with SIGKILL (a crash of the whole process tree).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from resources.instance_config import main as write_instance_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOB = "hold_slot_job"
# Monitoring polls every 15 s and frees slots 5 s after the run ends: two polls and margin.
TIMEOUT_S = 60

pytestmark = pytest.mark.integration


@dataclass
class Home:
    root: Path
    env: dict[str, str]
    workspace: Path
    pid_file: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"])

    def start(self, *args: object, log: str) -> subprocess.Popen:
        out = (self.root / f"{log}.log").open("w")
        proc = subprocess.Popen(
            [str(a) for a in args],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]


def _kill_group(proc: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def home(tmp_path) -> Iterator[Home]:
    dagster_home = tmp_path / "dagster_home"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_PG_URL"}
    env |= {"DAGSTER_HOME": str(dagster_home), "WORKER_PID_FILE": str(tmp_path / "worker.pid")}
    saved = os.environ.pop("DAGSTER_PG_URL", None)
    try:
        assert write_instance_config([str(dagster_home / "dagster.yaml")]) == 0
    finally:
        if saved is not None:
            os.environ["DAGSTER_PG_URL"] = saved
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n"
        "      module_name: tests.hardening.run_monitoring_job\n"
        f"      working_directory: {REPO}\n"
    )
    home = Home(tmp_path, env, workspace, tmp_path / "worker.pid")
    with home.instance():
        pass  # storage created once, before the daemon and the CLI would both create it
    try:
        yield home
    finally:
        for proc in home.started:
            _kill_group(proc)


def _start_holding_run(home: Home) -> tuple[subprocess.Popen, str, int]:
    """The daemon, one queued run of the job, and its worker once it holds the slot."""
    daemon = home.start(BIN / "dagster-daemon", "run", "-w", home.workspace, log="daemon")
    launch = home.start(
        BIN / "dagster", "job", "launch", "-w", home.workspace, "-j", JOB, log="launch"
    )
    assert launch.wait(timeout=120) == 0, home.log("launch")
    deadline = time.time() + 120
    while not home.pid_file.exists():
        assert time.time() < deadline, f"the run never started its step:\n{home.log('daemon')}"
        assert daemon.poll() is None, home.log("daemon")
        time.sleep(0.5)
    time.sleep(0.5)
    worker = int(home.pid_file.read_text())
    with home.instance() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        claimed = instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
        assert [slot.run_id for slot in claimed] == [run.run_id]
    return daemon, run.run_id, worker


def _wait_failed_and_freed(home: Home, run_id: str, timeout_s: float) -> tuple[str, float]:
    started = time.time()
    with home.instance() as instance:
        while True:
            run = instance.get_run_by_id(run_id)
            claimed = instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
            if run.status == dg.DagsterRunStatus.FAILURE and not claimed:
                failure = instance.get_records_for_run(
                    run_id, of_type=dg.DagsterEventType.RUN_FAILURE
                ).records
                return failure[-1].event_log_entry.message, time.time() - started
            assert time.time() - started < timeout_s, (
                f"after {timeout_s} s the run is {run.status.value}, slots held by "
                f"{[s.run_id for s in claimed]}"
            )
            time.sleep(0.5)


def test_the_monitoring_daemon_fails_a_killed_run_and_frees_its_slot(home):
    """Worker and code server killed: only the monitoring daemon can tell the run is dead."""
    _, run_id, worker = _start_holding_run(home)
    code_server = _parent(worker)
    # The code server first: alive, it would see its child die and fail the run itself.
    os.kill(code_server, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    message, seconds = _wait_failed_and_freed(home, run_id, TIMEOUT_S)
    assert f"worker process {worker}" in message and "is gone" in message, message
    print(f"failed and slot freed {seconds:.1f} s after the kill")


def test_a_killed_worker_whose_code_server_lives_frees_its_slot(home):
    """The code server fails the run; the slot its step held is freed by the daemon."""
    _, run_id, worker = _start_holding_run(home)
    os.kill(worker, signal.SIGKILL)
    _, seconds = _wait_failed_and_freed(home, run_id, TIMEOUT_S)
    print(f"failed and slot freed {seconds:.1f} s after the kill")


def test_a_run_cut_off_with_the_whole_platform_is_failed_at_the_next_start(home):
    """make run killed outright (daemon, code server, worker): `make dagster-home` fails the run."""
    daemon, run_id, worker = _start_holding_run(home)
    os.kill(worker, signal.SIGKILL)
    _kill_group(daemon)
    step = subprocess.run(
        [sys.executable, "-m", "resources.run_worker"],
        cwd=REPO,
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert step.returncode == 0, step.stderr
    assert f"Run {run_id} ({JOB}) was STARTED but its worker process {worker}" in step.stdout
    message, _ = _wait_failed_and_freed(home, run_id, timeout_s=1)
    assert "marked FAILED, pool slots freed" in message
