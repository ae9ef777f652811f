"""Checks on the minute rain tables: what consumers of the totals rely on (blocking), how
much of the registry had a nowcast (a warning), and how far the stream is behind (a warning).

Each check reads only the run's minutes (the partition or range), or the latest stored minute
when it runs on its own.
"""

from datetime import datetime, timedelta

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from resources import clock
from resources.clock import naive_utc
from resources.jetstream import nats_url_from
from resources.settings import load_settings
from resources.warehouse import DUCKDB_POOL
from weather_assets.locations import CoordinateRegistry
from weather_assets.rain.assets import (
    newest_loaded_minute,
    rain_forecasts,
    rolling_precipitation_sum,
)
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.loading import COMPLETENESS_TAG, NatsMinuteLog, redact_url, stream_lag


def _checked_window(
    context: dg.AssetCheckExecutionContext, conn: duckdb.DuckDBPyConnection, table: str, column: str
) -> tuple[datetime, datetime] | None:
    """The run's partition window (naive UTC), or the latest stored minute when run alone."""
    op_context = context.op_execution_context
    if op_context.has_partition_key or op_context.has_partition_key_range:
        window = op_context.partition_time_window
        return (
            naive_utc(window.start),
            naive_utc(window.end),
        )
    latest = conn.execute(f"select max({column}) from weather.{table}").fetchone()[0]
    return None if latest is None else (latest, latest + timedelta(minutes=1))


# The partition column of each checked table (its metadata's partition_expr).
_PARTITION_COLUMN = {
    "rain_forecasts": "fetched_minute",
    "rolling_precipitation_sum": "window_start",
}


def _query_window(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource, table: str, sql: str
) -> tuple | None:
    """Run ``sql`` (with ``{where}`` for the window predicate) against the checked minutes."""
    column = _PARTITION_COLUMN[table]
    with warehouse.get_connection() as conn:
        window = _checked_window(context, conn, table, column)
        if window is None:
            return None
        where = f"{column} >= ? and {column} < ?"
        return conn.execute(sql.format(where=where), list(window)).fetchone()


@dg.asset_check(asset=rain_forecasts, blocking=True, pool=DUCKDB_POOL)
def rain_forecasts_unique_per_minute(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """A coordinate has one forecast per minute per fetch: duplicates would double-count rain."""
    row = _query_window(
        context,
        warehouse,
        "rain_forecasts",
        "select count(*), coalesce(string_agg(distinct location_id, ', '), '') from ("
        " select location_id from weather.rain_forecasts where {where}"
        " group by location_id, fetched_minute, forecast_at having count(*) > 1)",
    )
    duplicates, examples = row or (0, "")
    return dg.AssetCheckResult(
        passed=row is not None and duplicates == 0,
        metadata={"duplicate_keys": duplicates, "locations": examples[:200] or "none"},
    )


@dg.asset_check(asset=rain_forecasts, blocking=True, pool=DUCKDB_POOL)
def rain_forecasts_rates_non_negative(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Precipitation rates are physical quantities: never negative."""
    row = _query_window(
        context,
        warehouse,
        "rain_forecasts",
        "select count(*) from weather.rain_forecasts where {where} and precipitation_mm_per_h < 0",
    )
    negative = row[0] if row else 0
    return dg.AssetCheckResult(
        passed=row is not None and negative == 0, metadata={"negative_rates": negative}
    )


@dg.asset_check(asset=rain_forecasts, pool=DUCKDB_POOL)
def rain_forecasts_nowcast_coverage(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """At least 95% of coordinates have a nowcast (a warning: some regions have none)."""
    row = _query_window(
        context,
        warehouse,
        "rain_forecasts",
        "select coalesce(avg(has_nowcast::double), 0) from ("
        " select bool_or(forecast_at is not null) as has_nowcast from weather.rain_forecasts"
        " where {where} group by location_id, fetched_minute)",
    )
    share = float(row[0]) if row else 0.0
    return dg.AssetCheckResult(
        passed=share >= 0.95,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"share_with_nowcast": dg.MetadataValue.float(round(share, 4))},
    )


@dg.asset_check(asset=rolling_precipitation_sum, blocking=True, pool=DUCKDB_POOL)
def rolling_precipitation_sum_one_row_per_coordinate(
    context: dg.AssetCheckExecutionContext,
    warehouse: DuckDBResource,
    coordinates: CoordinateRegistry,
) -> dg.AssetCheckResult:
    """Every registered coordinate appears exactly once per minute, with 0-60 minutes covered."""
    registered = len(coordinates.load())
    row = _query_window(
        context,
        warehouse,
        "rolling_precipitation_sum",
        f"select count(*) filter (where n_rows <> {registered} or n_ids <> {registered}),"
        " coalesce(sum(bad), 0) from ("
        " select count(*) as n_rows, count(distinct location_id) as n_ids,"
        " count(*) filter (where minutes_covered not between 0 and 60) as bad"
        " from weather.rolling_precipitation_sum where {where} group by window_start)",
    )
    wrong_minutes, out_of_range = row or (0, 0)
    return dg.AssetCheckResult(
        passed=row is not None and wrong_minutes == 0 and out_of_range == 0,
        metadata={
            "registered_coordinates": registered,
            "minutes_with_wrong_row_count": wrong_minutes,
            "minutes_covered_out_of_range": int(out_of_range),
        },
    )


# Stream lag past which rain_stream_lag warns: the processor or the loads are ~2 minutes behind.
LAG_MINUTES = 2
LAG_MESSAGE_MINUTES = 2


# Outside the duckdb pool: it reads the log (a network call, 2 s connect timeout) and no table,
# so it never holds the slot every warehouse writer waits for.
@dg.asset_check(asset=rain_forecasts)
def rain_stream_lag(
    context: dg.AssetCheckExecutionContext,
    coordinates: CoordinateRegistry,
    openweathermap: OpenWeatherMapResource,
) -> dg.AssetCheckResult:
    """The stream keeps up (a warning): the processor is at most ~2 minutes of messages behind
    the log, at most 2 ended minutes wait to be loaded, and the log is reachable where one is
    expected (``NATS_URL`` set, or a run the minute sensor requested from the log)."""
    settings = load_settings()
    url = nats_url_from(settings)
    log = NatsMinuteLog(url)
    status = log.status()
    run_tags = context.run.tags if context.run else {}
    expects_log = bool(settings.nats_url) or COMPLETENESS_TAG in run_tags
    if status is None or not status.has_stream:
        why = f"is not usable: {log.unreachable}" if status is None else "has no rain stream"
        return dg.AssetCheckResult(
            passed=not expects_log,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"the log ({redact_url(url)}) {why}"
            + ("" if expects_log else "; none is expected (NATS_URL unset)"),
            metadata={"log": why, "log_expected": expects_log},
        )
    n_shards = len(coordinates.shards(openweathermap.shard_size()))
    # Each minute is one message per coordinate plus one end marker per shard.
    max_messages = LAG_MESSAGE_MINUTES * (len(coordinates.load()) + n_shards)
    op_context = context.op_execution_context
    run_minutes = (
        [op_context.partition_time_window.end - timedelta(minutes=1)]
        if op_context.has_partition_key or op_context.has_partition_key_range
        else []
    )
    newest = newest_loaded_minute(context.instance, rain_forecasts.key, *run_minutes)
    lag = stream_lag(status, newest, clock.utcnow())
    problems = []
    if lag.messages_behind > max_messages:
        who = "the processor" if lag.processor_seen else "no processor has run yet:"
        problems.append(f"{who} {lag.messages_behind} messages behind the log")
    if len(lag.minutes_not_loaded) > LAG_MINUTES:
        problems.append(
            f"{len(lag.minutes_not_loaded)} ended minutes not loaded "
            f"(from {lag.minutes_not_loaded[0]:%Y-%m-%d %H:%M})"
        )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or "the stream keeps up",
        metadata={
            "lag_messages": lag.messages_behind,
            "lag_minutes": len(lag.minutes_not_loaded),
            "max_lag_messages": max_messages,
            "max_lag_minutes": LAG_MINUTES,
            "newest_loaded_minute": f"{newest:%Y-%m-%d %H:%M}" if newest else "none",
        },
    )


RAIN_CHECKS = [
    rain_forecasts_unique_per_minute,
    rain_forecasts_rates_non_negative,
    rain_forecasts_nowcast_coverage,
    rolling_precipitation_sum_one_row_per_coordinate,
    rain_stream_lag,
]
