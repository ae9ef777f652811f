"""Bounded growth of the minute stream: drop raw rows and payloads past their retention.

A year of minutes for 60 coordinates is ~32M raw forecast rows; the per-coordinate totals are
what users read, so raw rows are kept for ``RAIN_RAW_RETENTION_HOURS`` and totals for as long as
their minute partitions exist (``RAIN_PARTITION_DAYS``).

The stream processor's per-minute files and dead letters (``minute_store``), and minutes that
runs which failed before writing left staged (``staging``), go by the same raw retention. The log bounds itself (``RAIN_STREAM_MAX_AGE_HOURS``), the real-time view holds one
key per coordinate, and Spark's checkpoint is Spark's own (it keeps a bounded number of batches).

Rows are deleted in the ``duckdb`` pool, objects outside it (on S3 that is network I/O).
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


def refuse_recent_cutoff(cutoff: datetime, what: str) -> None:
    """Raise when ``cutoff`` is later than an hour ago, whatever computed it (defence in depth
    behind the config's validation)."""
    latest = clock.utcnow() - MIN_AGE
    if cutoff > latest:
        raise ValueError(
            f"refusing to delete {what} before {cutoff:%Y-%m-%d %H:%M:%S} UTC: the cutoff is "
            f"later than one hour ago ({latest:%Y-%m-%d %H:%M:%S} UTC); check the retention "
            "settings (RAIN_RAW_RETENTION_HOURS, RAIN_PARTITION_DAYS) and run config"
        )


def delete_before(
    conn: duckdb.DuckDBPyConnection, table: str, column: str, cutoff: datetime
) -> int:
    """Delete ``weather.table`` rows with ``column < cutoff`` (never a cutoff within the hour)."""
    refuse_recent_cutoff(cutoff, f"weather.{table} rows")
    if not table_exists(conn, "weather", table):
        return 0
    cutoff_naive = clock.naive_utc(cutoff)
    deleted = conn.execute(
        f"delete from weather.{table} where {column} < ?", [cutoff_naive]
    ).fetchone()
    return int(deleted[0]) if deleted else 0


def cutoffs(config: RainRetentionConfig) -> tuple[datetime, datetime]:
    """(raw cutoff, totals cutoff): the run config's retention, else the settings'."""
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
    return now - timedelta(hours=raw_hours), now - timedelta(days=totals_days)


@dg.op(pool=DUCKDB_POOL)
def delete_expired_rain_rows(
    context: dg.OpExecutionContext, config: RainRetentionConfig, warehouse: DuckDBResource
) -> None:
    """Delete expired rows of both rain tables and checkpoint DuckDB: the only retention step
    in the duckdb pool."""
    raw_cutoff, totals_cutoff = cutoffs(config)
    raw_rows = total_rows = 0
    if Path(warehouse.database).exists():
        with warehouse.get_connection() as conn:
            raw_rows = delete_before(conn, "rain_forecasts", "fetched_minute", raw_cutoff)
            total_rows = delete_before(
                conn, "rolling_precipitation_sum", "window_start", totals_cutoff
            )
            conn.execute("checkpoint")
    context.log.info(
        f"deleted {raw_rows} raw forecast rows before {raw_cutoff:%Y-%m-%d %H:%M}, "
        f"{total_rows} next-hour totals before {totals_cutoff:%Y-%m-%d %H:%M}"
    )
    context.add_output_metadata({"raw_rows_deleted": raw_rows, "totals_deleted": total_rows})


@dg.op
def delete_expired_rain_objects(
    context: dg.OpExecutionContext, config: RainRetentionConfig, object_store: ObjectStore
) -> None:
    """Delete raw payload objects, the stream processor's minute files and dead letters, and
    minutes failed runs left staged, by whole day folders past the raw cutoff. Outside the
    duckdb pool: listing and deleting objects is network I/O on S3."""
    raw_cutoff, _ = cutoffs(config)
    refuse_recent_cutoff(raw_cutoff, "rain objects")
    # Payload objects are grouped by day folder; a day goes once all of it is past the cutoff.
    prefix = object_store.key(RAW_PAYLOAD_PREFIX) + "/"
    expired = [
        key
        for key in object_store.list_keys(prefix)
        if key[len(prefix) : len(prefix) + 10] < f"{raw_cutoff:%Y-%m-%d}"
    ]
    objects = object_store.delete(expired)
    stream_files = object_store.delete(minute_store.expired_keys(object_store, raw_cutoff))
    staged = object_store.delete(staging.expired_staging_keys(object_store, raw_cutoff))
    context.log.info(
        f"deleted {objects} raw payload objects, {stream_files} stream processor files and "
        f"{staged} staged objects before {raw_cutoff:%Y-%m-%d}"
    )
    context.add_output_metadata(
        {
            "objects_deleted": objects,
            "stream_files_deleted": stream_files,
            "staged_objects_deleted": staged,
        }
    )


def _to_both_steps(config: dict) -> dict:
    return {
        "delete_expired_rain_rows": {"config": config},
        "delete_expired_rain_objects": {"config": config},
    }


@dg.graph(
    config=dg.ConfigMapping(
        config_fn=_to_both_steps, config_schema=RainRetentionConfig.to_config_schema()
    )
)
def compact_rain_history() -> None:
    """Delete expired rain rows (in the duckdb pool) and objects (outside it), with one run
    config: ``ops: {compact_rain_history: {config: {raw_retention_hours: ...}}}``."""
    delete_expired_rain_rows()
    delete_expired_rain_objects()
