"""Which sockets a process connects, and when each step of a run held its pool: together they
show whether a step that holds the ``duckdb`` pool slot did network I/O."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

_connects: list[tuple[float, object]] | None = None
_audit_installed = False


def _audit(event: str, args: tuple) -> None:
    if _connects is not None and event == "socket.connect":
        _connects.append((time.time(), args[1]))


@contextmanager
def socket_connects() -> Iterator[list[tuple[float, object]]]:
    """Every ``socket.connect`` of this process while inside, as ``(time, address)`` (Python's
    audit event: the NATS client's asyncio connections and ``requests``/``boto3`` sockets all
    raise it)."""
    global _connects, _audit_installed
    if not _audit_installed:  # an audit hook cannot be removed: install it once, switch it
        sys.addaudithook(_audit)
        _audit_installed = True
    _connects = []
    try:
        yield _connects
    finally:
        _connects = None


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple]:
    """``step key -> (pool, started, finished)`` from the run's plan and event log."""
    run = instance.get_run_by_id(run_id)
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    pools = {step.key: step.pool for step in plan.steps}
    started: dict[str, float] = {}
    steps = {}
    for entry in instance.all_logs(run_id):
        kind = entry.dagster_event.event_type if entry.dagster_event else None
        if kind == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            steps[entry.step_key] = (
                pools[entry.step_key],
                started[entry.step_key],
                entry.timestamp,
            )
    return steps


def connects_during(
    steps: dict[str, tuple], connects: list[tuple[float, object]], step: str
) -> list[object]:
    """The addresses connected to while ``step`` ran."""
    _, start, end = steps[step]
    return [address for t, address in connects if start <= t <= end]
