"""Where live minute polls of the stations are kept, and how readers get them back.

One JSON-lines object per UTC minute under
``{S3_PREFIX}/weather/observations_polls/observed_date=YYYY-MM-DD/HH-MM.jsonl``. Written by
``sensors.station_polls``; read by ``weather_observations_raw`` and ``temperature_actuals``.
"""

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl

from resources.object_store import ObjectStore
from weather_assets.stations.feed import RAW_SCHEMA

POLLS_PREFIX = "weather/observations_polls"
POLL_FILE_FORMAT = "%H-%M"
# A poll's ``observed_at`` (One Call's ``current.dt``) is close to, but not exactly, the minute
# of the poll (the API updates ``current`` every few minutes; retries take time): read the poll
# objects of this much more on each side of a window, then filter the rows by ``observed_at``.
POLL_SLACK = timedelta(minutes=30)


def poll_key(object_store: ObjectStore, minute: datetime) -> str:
    """The object of one poll minute (UTC)."""
    minute = minute.astimezone(UTC)
    return object_store.key(
        POLLS_PREFIX, f"observed_date={minute:%Y-%m-%d}", f"{minute:{POLL_FILE_FORMAT}}.jsonl"
    )


def _poll_minute(key: str, day: date) -> datetime | None:
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(".jsonl"):
        return None
    try:
        clock = datetime.strptime(name.removesuffix(".jsonl"), POLL_FILE_FORMAT)
    except ValueError:
        return None
    return datetime.combine(day, clock.time(), UTC)


def read_polls(object_store: ObjectStore, start: datetime, end: datetime) -> pl.DataFrame:
    """Stored poll rows observed in ``[start, end)`` (UTC), in ``RAW_SCHEMA``.

    Lists the poll objects of the days overlapping the window (widened by ``POLL_SLACK``),
    reads those whose minute is in the widened window and keeps the rows whose
    ``observed_at`` is in ``[start, end)``. No polls: an empty frame.
    """
    lo, hi = start - POLL_SLACK, end + POLL_SLACK
    rows: list[dict] = []
    day = lo.astimezone(UTC).date()
    while datetime.combine(day, datetime.min.time(), UTC) < hi:
        prefix = object_store.key(POLLS_PREFIX, f"observed_date={day:%Y-%m-%d}") + "/"
        for key in object_store.list_keys(prefix):
            minute = _poll_minute(key, day)
            if minute is None or not lo <= minute < hi:
                continue
            for line in object_store.get_bytes(key).decode("utf-8").splitlines():
                if line.strip():
                    rows.append(json.loads(line))
        day += timedelta(days=1)
    frame = pl.DataFrame(rows, schema=RAW_SCHEMA)
    stamp = pl.col("observed_at").str.to_datetime(
        "%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False
    )
    return frame.filter((stamp >= start) & (stamp < end))


def to_json_lines(frame: pl.DataFrame) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in frame.to_dicts()).encode("utf-8")
