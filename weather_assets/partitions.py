"""Every partition definition of the weather domain, and the window helper its assets share.

- ``RAIN_PARTITIONS``: UTC minutes, a rolling window of ``RAIN_PARTITION_DAYS`` days.
- ``HOURLY``: UTC hours (``%Y-%m-%d-%H:%M``): the temperature forecast, one run per observed hour.
- ``DAILY``: UTC days: the raw-readings ETL.

The minute window is read from the environment when this module is imported: Dagster needs a
partitions definition when the asset is declared, so this is the one setting a code location
takes at load (a changed ``RAIN_PARTITION_DAYS`` applies at the next reload).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import dagster as dg

from resources import clock
from resources.settings import load_settings

MINUTE_FORMAT = "%Y-%m-%d-%H:%M"
HOUR_FORMAT = "%Y-%m-%d-%H:%M"
DAY_FORMAT = "%Y-%m-%d"
FIRST_DAY = "2025-01-01"


def minute_partitions(days: int, now: datetime | None = None) -> dg.TimeWindowPartitionsDefinition:
    """UTC minutes from midnight ``days`` days ago up to and including the minute in progress.

    The start moves forward once a day, so the partition count stays near ``days * 1440``
    (under Dagster's recommended 100,000) however long the platform runs; older minutes leave
    the definition and the retention job deletes their rows.
    """
    today = (now or clock.utcnow()).astimezone(UTC).date()
    start = datetime.combine(today - timedelta(days=days), time(0), tzinfo=UTC)
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="* * * * *",
        fmt=MINUTE_FORMAT,
        start=start.strftime(MINUTE_FORMAT),
        timezone="UTC",
        end_offset=1,
    )


def window_starts(window: dg.TimeWindow, step: timedelta) -> list[datetime]:
    """The start of every ``step`` in a run's partition window (one key, or a range)."""
    starts, current = [], window.start
    while current < window.end:
        starts.append(current)
        current += step
    return starts


RAIN_PARTITIONS = minute_partitions(load_settings().rain_partition_days)
HOURLY = dg.HourlyPartitionsDefinition(
    start_date=f"{FIRST_DAY}-00:00", timezone="UTC", fmt=HOUR_FORMAT
)
DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC")
