"""Runs whose worker process is gone: found by the run monitoring daemon and at start-up.

``make run``'s ``dagster.yaml`` launches runs through ``LocalRunLauncher``: Dagster's default
launcher (a run executes in a subprocess of its code server) that also tags each run with this
host's name and can tell the run monitoring daemon whether the run's worker is alive. The
default launcher cannot, so a run whose worker died together with its code server (SIGKILL, an
out-of-memory kill, ``make run`` killed) stayed STARTED for ever and kept its ``duckdb`` pool
slot, stopping every warehouse writer.

    python -m resources.run_worker     (run by `make dagster-home`, before anything starts)

marks such runs FAILED and frees their pool slots at once. A run this host did not launch
(another machine on shared PostgreSQL storage, or ``dagster asset materialize`` in its own
process) is never judged: its worker cannot be seen from here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import RunsFilter

HOST_TAG = "platform/run_worker_host"
# Runs that have (or had) a worker process: launched, running, or being canceled.
WORKER_STATUSES = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class Worker:
    """What this host can say about a run's worker: ``alive`` is None when it cannot tell."""

    alive: bool | None
    reason: str


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_alive(pid: int, started_by: float | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie) that existed at ``started_by``.

    On Linux, /proc also tells a zombie or a reused pid (a process that started after
    ``started_by``) from the worker; elsewhere, existence is all that is checked.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    if fields[0] in ("Z", "X"):
        return False
    boot = _boot_time()
    if started_by is not None and boot is not None:
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        if started > started_by + 2.0:
            return False
    return True


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The run worker's pid and when it reported it ("Started process for run (pid: N)")."""
    events = instance.event_log_storage.get_logs_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20
    )
    for entry in events:
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Worker:
    host = run.tags.get(HOST_TAG)
    if host != socket.gethostname():
        where = f"launched on {host}" if host else "not launched by LocalRunLauncher"
        return Worker(None, f"run {run.run_id} was {where}: its worker is not visible here")
    found = worker_pid(instance, run.run_id)
    if found is None:
        return Worker(None, f"run {run.run_id} has not reported its worker's pid yet")
    pid, reported_at = found
    if process_alive(pid, started_by=reported_at):
        return Worker(True, f"worker process {pid} is alive")
    return Worker(False, f"its worker process {pid} on {host} is gone")


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher that tags runs with the host and reports worker health."""

    def launch_run(self, context) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, {HOST_TAG: socket.gethostname()})
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run)
        # Unknown counts as running: the monitoring daemon fails a run on anything else.
        status = WorkerStatus.FAILED if worker.alive is False else WorkerStatus.RUNNING
        return CheckRunHealthResult(status, worker.reason)


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILED every run of this host whose worker is gone and free its pool slots."""
    done = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=WORKER_STATUSES)):
        run = record.dagster_run
        worker = run_worker(instance, run)
        if worker.alive is not False:
            continue
        message = (
            f"Run {run.run_id} ({run.job_name}) was {run.status.value} but {worker.reason} "
            "(the platform was stopped or killed while it ran): marked FAILED, pool slots freed."
        )
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        done.append(message)
    return done


def main() -> int:
    with dg.DagsterInstance.get() as instance:
        messages = fail_orphaned_runs(instance)
    for message in messages:
        print(message)
    if not messages:
        print("no run was left in progress by a stopped platform")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
