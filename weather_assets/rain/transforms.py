"""Pure nowcast transforms: One Call ``minutely`` payloads -> rows -> next-hour totals.

No Dagster here: these are the functions the unit tests pin down and the benchmark times.
One Call 3.0 documents ``minutely.precipitation`` as a rate in mm/h, so one forecast minute
contributes ``rate / 60`` mm.

The window, as the real API answers: a call made during minute ``M`` (``fetched_minute``) gets
61 ``minutely`` entries from the NEXT full minute, ``M + 1 min`` .. ``M + 61 min`` (the
documented example: ``current.dt`` 1684929490, 10 s into its minute, ``minutely`` from
1684929540). The next hour is the 60 forecast minutes that follow the call, ``forecast_at`` in
``(fetched_minute, fetched_minute + 60 min]``: entries 0-59 of a timely answer, the 61st is
outside. ``window_start`` is ``M`` (the partition), ``window_end`` is ``M + 60 min``, inclusive.
An answer fetched a minute late starts at ``M + 2 min`` and covers 59 of those minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from resources.clock import floor_minute, naive_utc
from weather_assets.locations import Location

# Timestamps are naive UTC: DuckDB's TIMESTAMP, so partition predicates never depend on the
# reader's TimeZone setting.
FORECAST_SCHEMA: dict[str, pl.DataType] = {
    "location_id": pl.String(),
    "lat": pl.Float64(),
    "lon": pl.Float64(),
    "fetched_minute": pl.Datetime("us"),
    "forecast_at": pl.Datetime("us"),
    "precipitation_mm_per_h": pl.Float64(),
}

NEXT_HOUR_SCHEMA: dict[str, pl.DataType] = {
    "location_id": pl.String(),
    "lat": pl.Float64(),
    "lon": pl.Float64(),
    "window_start": pl.Datetime("us"),
    "window_end": pl.Datetime("us"),
    "next_hour_precipitation_mm": pl.Float64(),
    "minutes_covered": pl.Int64(),
}

WINDOW = timedelta(minutes=60)


class PayloadError(ValueError):
    """A One Call response does not have the documented shape."""


def minutely_rows(payload: Mapping[str, Any], location_id: str) -> list[tuple[int, float | None]]:
    """``(dt, precipitation)`` pairs of a payload; ``[]`` when the API has no nowcast there."""
    minutely = payload.get("minutely")
    if minutely is None:
        return []
    if not isinstance(minutely, list):
        raise PayloadError(f"{location_id}: 'minutely' is {type(minutely).__name__}, not a list")
    rows = []
    for index, entry in enumerate(minutely):
        try:
            dt = entry["dt"]
            rate = entry.get("precipitation")
        except (TypeError, KeyError, AttributeError):
            raise PayloadError(f"{location_id}: minutely[{index}] has no 'dt': {entry!r}") from None
        if not isinstance(dt, int) or isinstance(dt, bool):
            raise PayloadError(f"{location_id}: minutely[{index}].dt {dt!r} is not unix seconds")
        if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool)):
            raise PayloadError(
                f"{location_id}: minutely[{index}].precipitation {rate!r} is not a number"
            )
        rows.append((dt, None if rate is None else float(rate)))
    return rows


def forecasts_frame(
    parsed: Iterable[tuple[Location, Sequence[tuple[int | None, float | None]]]],
    fetched_minute: datetime,
) -> pl.DataFrame:
    """One row per coordinate per forecast minute, from ``minutely_rows`` output.

    A coordinate with no rows (no nowcast there, or its fetch failed) keeps one row with null
    ``forecast_at`` and rate, so it is never silently dropped downstream.
    """
    fetched = naive_utc(fetched_minute)
    ids: list[str] = []
    lats: list[float] = []
    lons: list[float] = []
    epochs: list[int | None] = []
    rates: list[float | None] = []
    for location, rows in parsed:
        if not rows:
            rows = [(None, None)]
        n = len(rows)
        ids.extend([location.location_id] * n)
        lats.extend([location.lat] * n)
        lons.extend([location.lon] * n)
        for dt, rate in rows:
            epochs.append(dt)
            rates.append(rate)
    frame = pl.DataFrame(
        {
            "location_id": pl.Series(ids, dtype=pl.String),
            "lat": pl.Series(lats, dtype=pl.Float64),
            "lon": pl.Series(lons, dtype=pl.Float64),
            "forecast_at": pl.Series(epochs, dtype=pl.Int64),
            "precipitation_mm_per_h": pl.Series(rates, dtype=pl.Float64),
        }
    )
    return frame.select(
        "location_id",
        "lat",
        "lon",
        pl.lit(fetched, dtype=pl.Datetime("us")).alias("fetched_minute"),
        pl.from_epoch("forecast_at", time_unit="s").cast(pl.Datetime("us")).alias("forecast_at"),
        "precipitation_mm_per_h",
    )


def next_hour_precipitation(forecasts: pl.DataFrame) -> pl.DataFrame:
    """Per coordinate and fetch minute: mm expected in ``(fetched_minute, +60 min]``.

    The 60 forecast minutes after the call's minute (M+1 .. M+60, see the module docstring).
    ``minutes_covered`` counts forecast minutes with a rate inside the window (60 against a
    full answer); with none the total is null (unknown), not 0 (dry).
    """
    window_end = pl.col("fetched_minute") + WINDOW
    in_window = (
        (pl.col("forecast_at") > pl.col("fetched_minute"))
        & (pl.col("forecast_at") <= window_end)
        & pl.col("precipitation_mm_per_h").is_not_null()
    )
    summed = (
        forecasts.with_columns(in_window.fill_null(False).alias("_in_window"))
        .group_by("location_id", "lat", "lon", "fetched_minute", maintain_order=True)
        .agg(
            (pl.col("precipitation_mm_per_h") / 60.0)
            .filter(pl.col("_in_window"))
            .sum()
            .alias("next_hour_precipitation_mm"),
            pl.col("forecast_at").filter(pl.col("_in_window")).n_unique().alias("minutes_covered"),
        )
    )
    return summed.select(
        "location_id",
        "lat",
        "lon",
        pl.col("fetched_minute").alias("window_start"),
        (pl.col("fetched_minute") + WINDOW).alias("window_end"),
        pl.when(pl.col("minutes_covered") > 0)
        .then(pl.col("next_hour_precipitation_mm"))
        .otherwise(None)
        .alias("next_hour_precipitation_mm"),
        pl.col("minutes_covered").cast(pl.Int64),
    )


def stale_minute_error(minute: datetime, now: datetime, max_age_minutes: int = 2) -> str | None:
    """Why a live nowcast cannot be fetched for ``minute`` at ``now``, or None if it can.

    The API only ever answers for the present, so a partition minute older than a couple of
    minutes (a late-launched run is fine) cannot be filled with real data any more.
    """
    age = int((floor_minute(now) - floor_minute(minute)).total_seconds() // 60)
    if age > max_age_minutes:
        return (
            f"partition minute {minute:%Y-%m-%d %H:%M} UTC is {age} minutes old: the One Call API "
            f"only forecasts from the present minute, so live mode cannot fetch it (at most "
            f"{max_age_minutes} minutes late). Simulated mode (SOURCE_MODE=simulated) can backfill."
        )
    if age < 0:
        return f"partition minute {minute:%Y-%m-%d %H:%M} UTC is in the future"
    return None


def wettest_markdown(totals: pl.DataFrame, names: Mapping[str, str], limit: int = 10) -> str:
    """A markdown table of the wettest coordinates for the Dagster UI."""
    top = (
        totals.filter(pl.col("next_hour_precipitation_mm").is_not_null())
        .sort(["next_hour_precipitation_mm", "location_id"], descending=[True, False])
        .head(limit)
    )
    lines = ["| location | lat | lon | next hour (mm) | minutes |", "|---|---:|---:|---:|---:|"]
    for row in top.iter_rows(named=True):
        name = names.get(row["location_id"], row["location_id"])
        lines.append(
            f"| {name} | {row['lat']:.4f} | {row['lon']:.4f} | "
            f"{row['next_hour_precipitation_mm']:.2f} | {row['minutes_covered']} |"
        )
    if top.is_empty():
        lines.append("| (no coordinate has a nowcast) | | | | |")
    return "\n".join(lines)
