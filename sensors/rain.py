"""The minute sensor of the nowcast stream: it requests minutes the log says are complete.

It fetches nothing. The stream processor records per minute which shards' end markers it has
processed (``rain_minutes`` in the log); each evaluation reads the entries after its cursor (the
last minute requested) and requests, oldest first, every minute that is complete, or whose grace
period (``RAIN_MINUTE_GRACE_SECONDS``) has passed with shards missing (run key = minute; tags say
why, and which shards are missing). The first minute still waiting stops the list, so partitions
are requested in order and the cursor never passes a minute that was not requested.

- After Dagster was down, the next evaluation requests every completed minute it missed while
  the log still holds it (``RAIN_STREAM_MAX_AGE_HOURS``), at most ``MAX_REQUESTS_PER_TICK`` per
  evaluation; the cursor moves to the last one requested and the next evaluation goes on.
- Minutes with no data at all (no producer alive, or expired from the log) are logged as
  missing; they have no progress entry, so there is nothing to request.
- First start (no cursor): it begins with the minutes of the last ``FIRST_START_MINUTES``
  minutes, not the log's whole history; older minutes can be backfilled from the UI or CLI.
- Log not reachable: the evaluation is skipped, saying so; ``dagster asset materialize`` still
  works without the log (it fetches on demand).

``request_current_minute`` (one run per wall-clock minute) is the station-polls sensor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError

from resources import clock
from resources.jetstream import LogUnavailable, nats_url_from, run_sync
from resources.settings import load_settings
from weather_assets.partitions import MINUTE_FORMAT, RAIN_PARTITIONS
from weather_assets.rain.jobs import rain_minute_job
from weather_assets.rain.loading import (
    COMPLETENESS_TAG,
    LOG_TIMEOUT_S,
    MISSING_SHARDS_TAG,
    redact_url,
)
from weather_assets.rain.stream.log import MINUTES
from weather_assets.rain.stream.minute_log import ProgressRead, read_progress
from weather_assets.rain.stream.progress import MinuteProgress, ReadyMinute, ready_minutes

# The run queue dequeues higher priorities first (QueuedRunCoordinator, tag dagster/priority).
MINUTE_RUN_PRIORITY = "10"
MAX_REQUESTS_PER_TICK = 60
FIRST_START_MINUTES = 10


def _key(minute: datetime) -> str:
    return minute.strftime(MINUTE_FORMAT)


def _minute(key: str) -> datetime:
    return datetime.strptime(key, MINUTE_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class MinutePlan:
    """What one evaluation requests, oldest first, and what it reports."""

    requests: list[ReadyMinute]
    gaps: list[datetime]
    """Minutes before the last request with no progress at all: missing, never requested."""
    cursor: str | None
    """The cursor after this evaluation (the last minute requested), unchanged if none."""
    reason: str


def read_after(cursor: str | None, now: datetime) -> datetime:
    """The minute after which the log is read: the cursor, or on a first start the minute
    before the window of the last ``FIRST_START_MINUTES`` minutes."""
    if cursor:
        return _minute(cursor)
    return clock.floor_minute(now.astimezone(UTC)) - timedelta(minutes=FIRST_START_MINUTES + 1)


def plan_minute_requests(
    cursor: str | None,
    progress: list[MinuteProgress],
    now: datetime,
    grace: timedelta,
    *,
    limit: int = MAX_REQUESTS_PER_TICK,
    earliest: datetime | None = None,
) -> MinutePlan:
    """Decide an evaluation from the cursor and the log's minute progress (pure).

    ``earliest``: the first minute with a partition; older progress is ignored.
    """
    after = read_after(cursor, now)
    candidates = [
        p for p in progress if p.minute > after and (earliest is None or p.minute >= earliest)
    ]
    # Gaps are counted from the cursor; on a first start only between the minutes requested.
    ready, gaps = ready_minutes(candidates, after if cursor else None, now, grace)
    requests = ready[:limit]
    if not requests:
        waiting = next((p for p in sorted(candidates, key=lambda p: p.minute)), None)
        if waiting is None:
            reason = f"no minute after {_key(after)} in the log yet"
        else:
            until = waiting.minute + timedelta(minutes=1) + grace
            missing = ", ".join(map(str, waiting.missing_shards))
            reason = (
                f"minute {_key(waiting.minute)} is waiting for shards {missing} of "
                f"{waiting.shards} (grace period until {until:%H:%M:%S} UTC)"
            )
        return MinutePlan([], [], cursor, reason)
    last = requests[-1].minute
    more = len(ready) - len(requests)
    reason = f"{len(requests)} minutes ready" + (f", {more} more next evaluation" if more else "")
    return MinutePlan(requests, [g for g in gaps if g < last], _key(last), reason)


def gap_ranges(gaps: list[datetime]) -> list[str]:
    """``["10:05", "10:07-10:09 (3 minutes)"]``-style runs of consecutive missing minutes."""
    runs: list[list[datetime]] = []
    for gap in sorted(gaps):
        if runs and gap - runs[-1][-1] == timedelta(minutes=1):
            runs[-1].append(gap)
        else:
            runs.append([gap])
    return [
        _key(run[0]) if len(run) == 1 else f"{_key(run[0])} to {_key(run[-1])} ({len(run)} minutes)"
        for run in runs
    ]


def run_request(item: ReadyMinute) -> dg.RunRequest:
    key = _key(item.minute)
    tags = {
        # Ahead of queued backfill runs: the newest minutes are what users look at.
        "dagster/priority": MINUTE_RUN_PRIORITY,
        COMPLETENESS_TAG: item.reason,
    }
    if item.progress.missing_shards:
        tags[MISSING_SHARDS_TAG] = ",".join(map(str, item.progress.missing_shards))
    return dg.RunRequest(run_key=key, partition_key=key, tags=tags)


@dg.sensor(
    job=rain_minute_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests each minute of the rain stream the log says is complete (or whose "
    "grace period passed), oldest first, once (run key = minute); after downtime, every "
    "completed minute the log still holds.",
)
def rain_minute_sensor(context: dg.SensorEvaluationContext):
    settings = load_settings()
    url = nats_url_from(settings)
    now = clock.utcnow()
    after = read_after(context.cursor, now)
    try:
        read: ProgressRead = run_sync(
            url,
            lambda js: read_progress(js, after, MAX_REQUESTS_PER_TICK + 1),
            timeout_s=LOG_TIMEOUT_S,
        )
    except LogUnavailable as exc:
        return dg.SkipReason(
            f"the rain log is not reachable ({str(exc).replace(url, redact_url(url))}); minutes "
            "are requested once it is back. Without the log, materialize a minute with "
            "`dagster asset materialize` (it fetches on demand)."
        )
    except BucketNotFoundError:
        return dg.SkipReason(
            f"the log at {redact_url(url)} has no {MINUTES} bucket yet: the producers and the "
            "stream processor have not started (`make run` starts them)"
        )
    except (NatsError, TimeoutError) as exc:
        return dg.SkipReason(f"reading {MINUTES} from the log failed: {type(exc).__name__}: {exc}")
    for key in read.unreadable:
        context.log.warning(f"{MINUTES} entry {key} is not readable minute progress; skipped")
    plan = plan_minute_requests(
        context.cursor,
        read.progress,
        now,
        timedelta(seconds=settings.rain_minute_grace_seconds),
        earliest=RAIN_PARTITIONS.start,
    )
    if plan.gaps:
        context.log.warning(
            f"{len(plan.gaps)} minutes have no data in the log (no producer alive, or expired "
            f"from the log) and stay missing: {', '.join(gap_ranges(plan.gaps)[:10])}"
        )
    if not plan.requests:
        return dg.SkipReason(plan.reason)
    context.log.info(
        f"requesting {_key(plan.requests[0].minute)}"
        + (f" to {_key(plan.requests[-1].minute)}" if len(plan.requests) > 1 else "")
        + f": {plan.reason}"
    )
    return dg.SensorResult(run_requests=[run_request(r) for r in plan.requests], cursor=plan.cursor)


# --- one run per wall-clock minute (the station-polls sensor) --------------------------------


@dataclass(frozen=True)
class MinuteTick:
    partition_key: str | None
    skipped_minutes: int
    reason: str


def next_minute_tick(cursor: str | None, now: datetime) -> MinuteTick:
    """Decide what one evaluation requests, given the last requested minute."""
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
