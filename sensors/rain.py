"""The minute sensor of the nowcast stream.

It only ever asks for the minute in progress: a nowcast cannot be fetched for the past, so
after downtime the stream resumes at the current minute and the gap stays visible in the UI as
missing partitions (simulated mode can backfill them on purpose).
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from resources import clock
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.jobs import rain_minute_job


@dataclass(frozen=True)
class MinuteTick:
    partition_key: str | None
    skipped_minutes: int
    reason: str


def next_minute_tick(cursor: str | None, now: datetime) -> MinuteTick:
    """Decide what one sensor evaluation requests, given the last requested minute."""
    current = clock.floor_minute(now.astimezone(UTC))
    key = current.strftime(MINUTE_FORMAT)
    if cursor == key:
        return MinuteTick(None, 0, f"minute {key} already requested")
    skipped = 0
    if cursor:
        last = datetime.strptime(cursor, MINUTE_FORMAT).replace(tzinfo=UTC)
        if last > current:
            return MinuteTick(None, 0, f"cursor {cursor} is ahead of the clock ({key})")
        skipped = max(0, int((current - last).total_seconds() // 60) - 1)
    return MinuteTick(key, skipped, "new minute")


@dg.sensor(
    job=rain_minute_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the current UTC minute of the rain stream, once (run key = minute).",
)
def rain_minute_sensor(context: dg.SensorEvaluationContext):
    return request_current_minute(
        context, gap_note="they stay missing (a past nowcast cannot be fetched)", partitioned=True
    )


# The run queue dequeues higher priorities first (QueuedRunCoordinator, tag dagster/priority).
MINUTE_RUN_PRIORITY = "10"


def request_current_minute(
    context: dg.SensorEvaluationContext, *, gap_note: str, partitioned: bool
) -> dg.RunRequest | dg.SkipReason:
    """One run per UTC minute (run key = minute), logging any minutes the sensor missed."""
    tick = next_minute_tick(context.cursor, clock.utcnow())
    if tick.partition_key is None:
        return dg.SkipReason(tick.reason)
    if tick.skipped_minutes:
        context.log.warning(
            f"resuming at {tick.partition_key} after {tick.skipped_minutes} unrequested "
            f"minutes; {gap_note}"
        )
    context.update_cursor(tick.partition_key)
    return dg.RunRequest(
        run_key=tick.partition_key,
        partition_key=tick.partition_key if partitioned else None,
        # A minute is only fetchable while it is current: ahead of queued backfill runs.
        tags={"dagster/priority": MINUTE_RUN_PRIORITY},
    )
