"""Bounded growth of the minute stream: drop raw rows and payloads past their retention.

A year of minutes for 60 coordinates is ~32M raw forecast rows; the per-coordinate totals are
what users read, so raw rows are kept for ``RAIN_RAW_RETENTION_HOURS`` and totals for as long as
their minute partitions exist (``RAIN_PARTITION_DAYS``).

The stream processor's per-minute files and dead letters (``minute_store``), and minutes that
runs which failed before writing left staged (``staging``), go by the same raw retention. The log bounds itself (``RAIN_STREAM_MAX_AGE_HOURS``), the real-time view holds one
key per coordinate, and Spark's checkpoint is Spark's own (it keeps a bounded number of batches).
"""

from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import field_validator

from resources import clock
from resources.object_store import ObjectStore
from resources.settings import load_settings
from resources.warehouse import DUCKDB_POOL, table_exists
from weather_assets.rain import staging
from weather_assets.rain.assets import RAW_PAYLOAD_PREFIX
from weather_assets.rain.stream import minute_store


class RainRetentionConfig(dg.Config):
    raw_retention_hours: int | None = None
    """Raw per-minute forecasts (rain_forecasts) and payloads older than this are deleted
    (default: RAIN_RAW_RETENTION_HOURS)."""
    totals_retention_days: int | None = None
    """Next-hour totals (rolling_precipitation_sum) older than this are deleted
    (default: RAIN_PARTITION_DAYS)."""

    @field_validator("raw_retention_hours", "totals_retention_days")
    @classmethod
    def _at_least_one(cls, value: int | None, info) -> int | None:
        # The launchpad takes any int: 0 or -1 would put the cutoff at or after now and
        # delete every row.
        if value is not None and value < 1:
            raise ValueError(
                f"{info.field_name} must be at least 1 (got {value}): a cutoff at or after now "
                "would delete every row"
            )
        return value


# The newest cutoff any delete accepts: rows of the last hour are never retention's to delete.
MIN_AGE = timedelta(hours=1)


def delete_before(
    conn: duckdb.DuckDBPyConnection, table: str, column: str, cutoff: datetime
) -> int:
    """Delete ``weather.table`` rows with ``column < cutoff``; refuses a cutoff later than an
    hour ago whatever computed it (defence in depth behind the config's validation)."""
    latest = clock.utcnow() - MIN_AGE
    if cutoff > latest:
        raise ValueError(
            f"refusing to delete weather.{table} rows before {cutoff:%Y-%m-%d %H:%M:%S} UTC: the "
            f"cutoff is later than one hour ago ({latest:%Y-%m-%d %H:%M:%S} UTC); check the "
            "retention settings (RAIN_RAW_RETENTION_HOURS, RAIN_PARTITION_DAYS) and run config"
        )
    if not table_exists(conn, "weather", table):
        return 0
    cutoff_naive = clock.naive_utc(cutoff)
    deleted = conn.execute(
        f"delete from weather.{table} where {column} < ?", [cutoff_naive]
    ).fetchone()
    return int(deleted[0]) if deleted else 0


@dg.op(pool=DUCKDB_POOL)
def compact_rain_history(
    context: dg.OpExecutionContext,
    config: RainRetentionConfig,
    warehouse: DuckDBResource,
    object_store: ObjectStore,
) -> None:
    """Delete expired rain rows, raw payload objects, the stream processor's minute files and
    dead letters, and minutes failed runs left staged; report what went."""
    settings = load_settings()
    raw_hours = (
        settings.rain_raw_retention_hours
        if config.raw_retention_hours is None
        else config.raw_retention_hours
    )
    totals_days = (
        settings.rain_partition_days
        if config.totals_retention_days is None
        else config.totals_retention_days
    )
    now = clock.utcnow()
    raw_cutoff = now - timedelta(hours=raw_hours)
    totals_cutoff = now - timedelta(days=totals_days)
    raw_rows = total_rows = 0
    if Path(warehouse.database).exists():
        with warehouse.get_connection() as conn:
            raw_rows = delete_before(conn, "rain_forecasts", "fetched_minute", raw_cutoff)
            total_rows = delete_before(
                conn, "rolling_precipitation_sum", "window_start", totals_cutoff
            )
            conn.execute("checkpoint")
    # Payload objects are grouped by day folder; a day goes once all of it is past the cutoff.
    prefix = object_store.key(RAW_PAYLOAD_PREFIX) + "/"
    expired = [
        key
        for key in object_store.list_keys(prefix)
        if key[len(prefix) : len(prefix) + 10] < f"{raw_cutoff:%Y-%m-%d}"
    ]
    objects = object_store.delete(expired)
    # The processor's minute files and dead letters, by day folder too.
    stream_files = object_store.delete(minute_store.expired_keys(object_store, raw_cutoff))
    # What runs that failed between loading and writing a minute left staged, by day folder.
    staged = object_store.delete(staging.expired_staging_keys(object_store, raw_cutoff))
    context.log.info(
        f"deleted {raw_rows} raw forecast rows before {raw_cutoff:%Y-%m-%d %H:%M}, "
        f"{total_rows} next-hour totals before {totals_cutoff:%Y-%m-%d %H:%M}, "
        f"{objects} raw payload objects, {stream_files} stream processor files, "
        f"{staged} staged objects"
    )
    context.add_output_metadata(
        {
            "raw_rows_deleted": raw_rows,
            "totals_deleted": total_rows,
            "objects_deleted": objects,
            "stream_files_deleted": stream_files,
            "staged_objects_deleted": staged,
        }
    )
