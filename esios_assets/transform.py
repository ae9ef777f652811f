"""Pure polars transforms of ESIOS indicator 460 payloads (no Dagster imports).

Spain publishes the forecast in local wall time (Europe/Madrid), which repeats 02:00-02:59 on
the autumn DST day and skips it in spring. The export keeps Spain's wall-time strings as
published; the warehouse additionally keeps the UTC instant and the offset, so every hour stays
unique and months can be cut exactly.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

__all__ = [
    "EXPORT_COLUMNS",
    "MADRID",
    "demand_forecast_frame",
    "expected_hours",
    "export_frame",
    "month_bounds_local",
    "month_bounds_utc",
    "published_end_utc",
    "sql_month_rows",
    "within_month",
]

MADRID = ZoneInfo("Europe/Madrid")
EXPORT_COLUMNS = ("name", "id", "datetime", "demand_forecast", "update_timestamp")
WALL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

SCHEMA = {
    "name": pl.String,
    "id": pl.Int64,
    "datetime": pl.String,
    "demand_forecast": pl.Float64,
    "update_timestamp": pl.String,
    "datetime_utc": pl.Datetime("us"),
    "utc_offset_minutes": pl.Int32,
}


def _parse_instant(raw: Any, what: str) -> datetime:
    """An aware datetime from an ISO 8601 string ("Z" or an offset required)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{what} must be an ISO 8601 string, got {raw!r}")
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{what} is not an ISO 8601 timestamp: {raw!r}") from None
    if parsed.utcoffset() is None:
        raise ValueError(f"{what} has no UTC offset, so its instant is ambiguous: {raw!r}")
    return parsed


def _offset_minutes(moment: datetime) -> int:
    offset = moment.utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def demand_forecast_frame(payload: dict) -> pl.DataFrame:
    """One row per published hour, sorted by its UTC instant.

    Columns: EXPORT_COLUMNS, then ``datetime_utc`` (naive UTC) and ``utc_offset_minutes``.
    ``datetime`` is the wall time Spain published (its ``datetime`` without the offset);
    when a value lacks ``datetime``, it is derived from ``datetime_utc`` in Europe/Madrid.
    Raises ValueError naming the problem rather than loading a half-understood payload.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("indicator"), dict):
        raise ValueError("ESIOS payload has no 'indicator' object")
    indicator = payload["indicator"]
    values = indicator.get("values")
    if not isinstance(values, list):
        raise ValueError("ESIOS payload has no 'indicator.values' list")
    name = indicator.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"indicator.name must be a non-empty string, got {name!r}")
    indicator_id = indicator.get("id")
    if isinstance(indicator_id, bool) or not isinstance(indicator_id, int):
        raise ValueError(f"indicator.id must be an integer, got {indicator_id!r}")

    updated_raw = indicator.get("values_updated_at")
    update_timestamp = (
        None
        if updated_raw is None
        else _parse_instant(updated_raw, "indicator.values_updated_at").strftime(WALL_TIME_FORMAT)
    )

    wall_times: list[str] = []
    forecasts: list[float] = []
    instants: list[datetime] = []
    offsets: list[int] = []
    for i, item in enumerate(values):
        where = f"indicator.values[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is not an object: {item!r}")
        if item.get("datetime_utc") is None:
            raise ValueError(f"{where} has no datetime_utc")
        instant = _parse_instant(item["datetime_utc"], f"{where}.datetime_utc").astimezone(UTC)
        value = item.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{where} ({item['datetime_utc']}) has a non-numeric value: {value!r}")
        if item.get("datetime") is None:
            local = instant.astimezone(MADRID)
        else:
            local = _parse_instant(item["datetime"], f"{where}.datetime")
            if local != instant:  # aware comparison: same instant whatever the offsets
                raise ValueError(
                    f"{where}: datetime {item['datetime']!r} and datetime_utc "
                    f"{item['datetime_utc']!r} are different instants"
                )
        wall_times.append(local.strftime(WALL_TIME_FORMAT))
        forecasts.append(float(value))
        instants.append(instant.replace(tzinfo=None))
        offsets.append(_offset_minutes(local))

    n = len(values)
    frame = pl.DataFrame(
        {
            "name": [name] * n,
            "id": [indicator_id] * n,
            "datetime": wall_times,
            "demand_forecast": forecasts,
            "update_timestamp": [update_timestamp] * n,
            "datetime_utc": instants,
            "utc_offset_minutes": offsets,
        },
        schema=SCHEMA,
    )
    return frame.sort("datetime_utc")


def export_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Exactly the five published columns, in the export's order (drops the UTC helpers)."""
    return frame.select(EXPORT_COLUMNS)


def _month_start(month_start: date) -> date:
    if month_start.day != 1:
        raise ValueError(f"month_start must be the first day of a month, got {month_start}")
    return date(month_start.year, month_start.month, 1)


def _next_month(month_start: date) -> date:
    return (month_start.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_bounds_utc(month_start: date) -> tuple[datetime, datetime]:
    """Naive UTC [start, end) of the Spanish local month: local midnight of its first day to
    local midnight of the next month's first day (e.g. 2017-01 -> 2016-12-31 23:00, 2017-01-31
    23:00). Half-open, so consecutive months tile without overlap."""
    first = _month_start(month_start)

    def utc_midnight(day: date) -> datetime:
        local = datetime(day.year, day.month, day.day, tzinfo=MADRID)
        return local.astimezone(UTC).replace(tzinfo=None)

    return utc_midnight(first), utc_midnight(_next_month(first))


def published_end_utc(month_start: date, now: datetime) -> datetime:
    """Naive UTC end of the month's hours that must be published by aware ``now``: the month's
    end once it is over; for the month in progress, the end of today in Spain (today's
    forecast was published yesterday; tomorrow's may or may not be out yet)."""
    start, end = month_bounds_utc(month_start)
    tomorrow = now.astimezone(MADRID).date() + timedelta(days=1)
    today_end = datetime.combine(tomorrow, time(), tzinfo=MADRID).astimezone(UTC)
    return max(start, min(end, today_end.replace(tzinfo=None)))


def expected_hours(month_start: date) -> int:
    """Local hours in the month in Europe/Madrid: 24 per day, 743 in March, 745 in October."""
    start, end = month_bounds_utc(month_start)
    return int((end - start) // timedelta(hours=1))


def month_bounds_local(month_start: date) -> tuple[datetime, datetime]:
    """Naive Europe/Madrid wall-time [start, end) of the month (its first midnight to the next
    month's): the window of a table that has only wall times. Both 02:00 hours of the October
    change lie inside it, so a month's delete and insert replace them together."""
    first = _month_start(month_start)
    following = _next_month(first)
    return datetime(first.year, first.month, 1), datetime(following.year, following.month, 1)


def within_month(frame: pl.DataFrame, month_start: date) -> pl.DataFrame:
    """The rows whose UTC instant lies in the local month. A row outside would be written where
    the month's replace cannot reach it, so a re-run would add it again."""
    start, end = month_bounds_utc(month_start)
    return frame.filter(pl.col("datetime_utc").is_between(start, end, closed="left"))


def sql_month_rows(
    forecast: pl.DataFrame, month_start: date, *, with_utc: bool
) -> tuple[pl.DataFrame, str, datetime, datetime]:
    """One month for the SQL table: (rows, key column, window start, window end).

    With a ``datetime_utc`` column the window is the month's UTC range (unique per hour); with
    only the brief's five columns it is the month's wall-time range on ``datetime``. The wall
    times (``datetime``, ``update_timestamp``) are naive datetimes, which the connector writes
    as the brief's ``yyyy-mm-dd HH:MM:SS`` to a text column and as is to a DATETIME column.
    """
    rows = within_month(forecast, month_start).sort("datetime_utc")
    columns = [
        pl.col("name"),
        pl.col("id"),
        pl.col("datetime").str.to_datetime(WALL_TIME_FORMAT, time_unit="us"),
        pl.col("demand_forecast"),
        pl.col("update_timestamp").str.to_datetime(WALL_TIME_FORMAT, time_unit="us"),
    ]
    if with_utc:
        return rows.select(*columns, "datetime_utc"), "datetime_utc", *month_bounds_utc(month_start)
    return rows.select(columns), "datetime", *month_bounds_local(month_start)
