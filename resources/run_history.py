"""Bounded Dagster instance: old runs of high-frequency jobs deleted with everything they left.

Each minute run keeps its run record, its event log (on SQLite a ~220 KB database file per run
under ``DAGSTER_HOME/history/runs``) and its compute logs (``DAGSTER_HOME/storage/<run_id>``):
1,440 runs and ~300 MB a day, for ever, unless deleted. ``purge_runs`` deletes the finished
runs of the named jobs once they are older than a retention (failed and canceled runs are kept
longer, for diagnosis), never a run in progress. ``instance.delete_run`` removes the record and
the events; on SQLite the run's emptied database file is removed as well (SQLite never gives a
file's pages back), and the compute logs go through the instance's compute log manager.

Deleting a run deletes its materialization events too: the UI then shows those partitions as
never materialized. That is why only jobs whose history nothing reads (minute loads, clean-ups)
are purged, and why the retention is at least as long as the rows it describes are kept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from dagster._core.storage.dagster_run import RunsFilter

SUCCEEDED = [dg.DagsterRunStatus.SUCCESS]
# Kept longer: what an operator may still need to look at.
UNSUCCESSFUL = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
BATCH = 500


@dataclass(frozen=True)
class Cutoffs:
    """Finished runs that ended before these are deleted."""

    succeeded: datetime
    unsuccessful: datetime

    @classmethod
    def from_retention(cls, now: datetime, hours: int, failed_days: int) -> Cutoffs:
        if hours < 1 or failed_days < 1:
            raise ValueError(
                f"run retention must be at least 1 hour and failed-run retention at least 1 day, "
                f"got {hours} h and {failed_days} d"
            )
        return cls(now - timedelta(hours=hours), now - timedelta(days=failed_days))

    def cutoff_for(self, status: dg.DagsterRunStatus) -> datetime | None:
        """The cutoff for a run in ``status``; None for a run not finished (never deleted)."""
        if status in SUCCEEDED:
            return self.succeeded
        if status in UNSUCCESSFUL:
            return self.unsuccessful
        return None


@dataclass
class PurgeReport:
    deleted: int = 0
    event_log_files: int = 0
    bytes_freed: int = 0
    by_job: dict[str, int] = field(default_factory=dict)


def expired(status: dg.DagsterRunStatus, end_time: float | None, cutoffs: Cutoffs) -> bool:
    """Whether a run may go: finished, and ended before its status's cutoff."""
    cutoff = cutoffs.cutoff_for(status)
    return cutoff is not None and end_time is not None and end_time < cutoff.timestamp()


def _expired_runs(
    instance: dg.DagsterInstance, jobs: Iterable[str], cutoffs: Cutoffs, limit: int
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for job in jobs:
        for statuses in (SUCCEEDED, UNSUCCESSFUL):
            cutoff = cutoffs.cutoff_for(statuses[0])
            records = instance.get_run_records(
                filters=RunsFilter(job_name=job, statuses=statuses, updated_before=cutoff),
                limit=limit,
                ascending=True,
            )
            found += [
                (r.dagster_run.run_id, job)
                for r in records
                if expired(r.dagster_run.status, r.end_time, cutoffs)
            ]
    return found


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def delete_run(instance: dg.DagsterInstance, run_id: str) -> tuple[int, bool]:
    """Delete one run, its events and compute logs; (bytes of files removed, file removed)."""
    freed = 0
    logs = instance.compute_log_manager
    base_dir = getattr(logs, "_base_dir", None)
    if base_dir:
        freed += sum(
            _file_size(os.path.join(root, name))
            for root, _, names in os.walk(os.path.join(base_dir, run_id))
            for name in names
        )
    with contextlib.suppress(NotImplementedError):
        logs.delete_logs(prefix=[run_id])
    instance.delete_run(run_id)
    # SQLite event logs: one database per run, emptied but not shrunk by delete_events.
    path_for_shard = getattr(instance.event_log_storage, "path_for_shard", None)
    removed = False
    if path_for_shard is not None:
        path = path_for_shard(run_id)
        size = _file_size(path)
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(path + suffix)
                removed = removed or suffix == ""
            except FileNotFoundError:
                pass
        freed += size if removed else 0
        # This process's storage remembers the file as set up; a later read must set it up anew.
        getattr(instance.event_log_storage, "_initialized_dbs", set()).discard(run_id)
    return freed, removed


def purge_runs(
    instance: dg.DagsterInstance, jobs: Iterable[str], cutoffs: Cutoffs, limit: int = 10_000
) -> PurgeReport:
    """Delete up to ``limit`` expired runs of ``jobs``, oldest first."""
    report = PurgeReport()
    jobs = list(jobs)
    while report.deleted < limit:
        batch = _expired_runs(instance, jobs, cutoffs, min(BATCH, limit - report.deleted))
        if not batch:
            break
        for run_id, job in batch[: limit - report.deleted]:
            freed, removed = delete_run(instance, run_id)
            report.deleted += 1
            report.event_log_files += int(removed)
            report.bytes_freed += freed
            report.by_job[job] = report.by_job.get(job, 0) + 1
    return report
