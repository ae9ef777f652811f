"""Dagster's own history of the minute stream, bounded: old minute runs deleted every hour.

The minute jobs are the instance's bulk (1,440 runs a day each); ``run_history_job`` deletes
their finished runs past ``RUN_RETENTION_HOURS`` (failed and canceled ones past
``FAILED_RUN_RETENTION_DAYS``), with event logs and compute logs (``resources.run_history``),
and the hourly housekeeping runs (this job's and ``rain_retention_job``'s) the same way. Runs of
every other job are kept: their materializations are what the sensors and the UI read.
"""

import dagster as dg

from resources import clock
from resources.run_history import Cutoffs, purge_runs
from resources.settings import load_settings

# By name: station_poll_job lives in weather_assets.stations, rain_minute_job in .jobs.
PURGED_JOBS = ("rain_minute_job", "station_poll_job", "rain_retention_job", "run_history_job")


class RunHistoryConfig(dg.Config):
    run_retention_hours: int | None = None
    """Successful runs of the purged jobs older than this are deleted (default:
    RUN_RETENTION_HOURS)."""
    failed_run_retention_days: int | None = None
    """Failed and canceled ones older than this (default: FAILED_RUN_RETENTION_DAYS)."""
    max_runs: int = 10_000
    """At most this many runs per run (a first purge of a large instance takes several)."""


@dg.op
def purge_run_history(context: dg.OpExecutionContext, config: RunHistoryConfig) -> None:
    """Delete expired minute and housekeeping runs; report how many and how much went."""
    settings = load_settings()
    hours = config.run_retention_hours or settings.run_retention_hours
    days = config.failed_run_retention_days or settings.failed_run_retention_days
    try:
        cutoffs = Cutoffs.from_retention(clock.utcnow(), hours, days)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    report = purge_runs(context.instance, PURGED_JOBS, cutoffs, limit=config.max_runs)
    context.log.info(
        f"deleted {report.deleted} runs ({report.bytes_freed / 1e6:.1f} MB of event and compute "
        f"logs): successful before {cutoffs.succeeded:%Y-%m-%d %H:%M}, failed before "
        f"{cutoffs.unsuccessful:%Y-%m-%d %H:%M} UTC"
    )
    context.add_output_metadata(
        {
            "runs_deleted": report.deleted,
            "runs_deleted_by_job": dg.MetadataValue.json(report.by_job),
            "event_log_files_deleted": report.event_log_files,
            "mb_freed": round(report.bytes_freed / 1e6, 2),
            "run_retention_hours": hours,
            "failed_run_retention_days": days,
        }
    )


@dg.job(description="Deletes minute and housekeeping runs past their retention (see README).")
def run_history_job():
    purge_run_history()


run_history_schedule = dg.ScheduleDefinition(
    name="run_history_schedule",
    job=run_history_job,
    cron_schedule="47 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: keeps the Dagster instance (runs, event logs, compute logs) bounded.",
)
