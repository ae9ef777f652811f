"""Dagster wiring of the minute rain nowcast: assets, checks and the retention job."""

import gzip
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from resources.coordinates import CoordinateRegistry
from resources.http import ApiAuthError
from resources.object_store import ObjectStore
from resources.openweathermap import NowcastResult, OpenWeatherMapResource, fetch_nowcasts
from resources.settings import LIVE
from resources.warehouse import DUCKDB_POOL
from weather_assets.partitions import MINUTE_FORMAT, RAIN_PARTITIONS, window_starts
from weather_assets.rain import (
    forecasts_frame,
    next_hour_precipitation,
    stale_minute_error,
    wettest_markdown,
)

OFFICE_LOCATION_ID = "office"
RAW_PAYLOAD_PREFIX = "raw/openweathermap/onecall"

_COORD_COLUMNS = [
    dg.TableColumn("location_id", "VARCHAR", description="Registry id (locations.csv)."),
    dg.TableColumn("lat", "DOUBLE", description="Latitude, WGS84 degrees."),
    dg.TableColumn("lon", "DOUBLE", description="Longitude, WGS84 degrees."),
]

FORECAST_COLUMNS = dg.TableSchema(
    columns=[
        *_COORD_COLUMNS,
        dg.TableColumn(
            "fetched_minute", "TIMESTAMP", description="UTC minute of the call (the partition)."
        ),
        dg.TableColumn(
            "forecast_at",
            "TIMESTAMP",
            description="UTC minute forecast; null when the API had no nowcast for the coordinate.",
        ),
        dg.TableColumn(
            "precipitation_mm_per_h",
            "DOUBLE",
            description="One Call 3.0 minutely.precipitation: a rate in mm/h.",
        ),
    ]
)

NEXT_HOUR_COLUMNS = dg.TableSchema(
    columns=[
        *_COORD_COLUMNS,
        dg.TableColumn("window_start", "TIMESTAMP", description="UTC partition minute, inclusive."),
        dg.TableColumn("window_end", "TIMESTAMP", description="window_start + 60 min, exclusive."),
        dg.TableColumn(
            "next_hour_precipitation_mm",
            "DOUBLE",
            description="Sum of rate/60 over the covered minutes, in mm; null with no nowcast.",
        ),
        dg.TableColumn(
            "minutes_covered", "BIGINT", description="Forecast minutes inside the window (0-60)."
        ),
    ]
)


class RainFetchConfig(dg.Config):
    max_failed_share: float = 0.05
    """Fail the partition if more than this share of coordinates could not be fetched."""
    archive_raw_payloads: bool = True
    """Keep the API's answers, as received, in the object store (for audit and replay)."""


def _archive(store: ObjectStore, minute: datetime, results: list[NowcastResult]) -> str:
    lines = [
        json.dumps(
            {"location_id": r.location.location_id, "shard": r.shard}
            | ({"payload": r.payload} if r.error is None else {"error": r.error}),
            separators=(",", ":"),
        )
        for r in results
    ]
    key = store.key(RAW_PAYLOAD_PREFIX, f"{minute:%Y-%m-%d}", f"{minute:%H-%M}.jsonl.gz")
    body = gzip.compress("\n".join(lines).encode(), compresslevel=5)
    return store.put_bytes(key, body, content_type="application/gzip")


@dg.asset(
    group_name="weather",
    kinds={"python", "polars", "duckdb"},
    partitions_def=RAIN_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    metadata={
        "schema": "weather",
        "partition_expr": "fetched_minute",
        "dagster/column_schema": FORECAST_COLUMNS,
    },
)
def rain_forecasts(
    context: dg.AssetExecutionContext,
    config: RainFetchConfig,
    openweathermap: OpenWeatherMapResource,
    coordinates: CoordinateRegistry,
    object_store: ObjectStore,
) -> pl.DataFrame:
    """The One Call 3.0 minutely nowcast of every registered coordinate, fetched in the minute.

    One row per coordinate per forecast minute (61 from the fetch minute). Coordinates fan out
    over shards, each within one API key's per-minute limit. A coordinate without a nowcast keeps
    a single row with null forecast_at, so it is never silently dropped.
    """
    shards = coordinates.shards(openweathermap.calls_per_minute)
    n_locations = sum(len(s) for s in shards)
    live = openweathermap.source_mode == LIVE
    frames, failed, raw_uris = [], [], []
    retry_reasons: Counter[str] = Counter()
    started = time.perf_counter()
    for minute in window_starts(context.partition_time_window, timedelta(minutes=1)):
        if live and (reason := stale_minute_error(minute, datetime.now(UTC))):
            raise dg.Failure(reason)
        clients = openweathermap.clients_for(
            len(shards), clock=lambda minute=minute: minute, logger=context.log
        )
        try:
            results = fetch_nowcasts(shards, clients, max_workers=openweathermap.max_workers)
        except ApiAuthError as exc:
            raise dg.Failure(str(exc)) from None
        for client in {id(c): c for c in clients}.values():
            retry_reasons.update(client.retries_by_reason)
        failures = [r for r in results if r.error is not None]
        if len(failures) > config.max_failed_share * n_locations:
            listed = "; ".join(f"{r.location.location_id}: {r.error}" for r in failures[:5])
            raise dg.Failure(
                f"{len(failures)} of {n_locations} coordinates failed for minute "
                f"{minute:{MINUTE_FORMAT}} (more than {config.max_failed_share:.0%}): {listed}"
            )
        for r in failures:
            context.log.warning(f"{r.location.location_id} kept without a nowcast: {r.error}")
        failed.extend(r.location.location_id for r in failures)
        if config.archive_raw_payloads:
            raw_uris.append(_archive(object_store, minute, results))
        frames.append(forecasts_frame(((r.location, r.rows) for r in results), minute))

    forecasts = pl.concat(frames)
    with_nowcast = forecasts.filter(pl.col("forecast_at").is_not_null())["location_id"].n_unique()
    context.add_output_metadata(
        {
            "source": openweathermap.source_mode,
            "coordinates": n_locations,
            "shards": len(shards),
            "minutes": len(frames),
            "coordinates_with_nowcast": with_nowcast,
            "failed_coordinates": len(failed),
            "failed_ids": ", ".join(sorted(set(failed))[:20]) or "none",
            "http_retries": retry_reasons.total(),
            "http_retries_by_reason": dict(sorted(retry_reasons.items())),
            "fetch_seconds": round(time.perf_counter() - started, 3),
            "raw_payloads": raw_uris[-1] if raw_uris else "not archived",
            "dagster/row_count": forecasts.height,
        }
    )
    return forecasts


@dg.asset(
    group_name="weather",
    kinds={"python", "polars", "duckdb"},
    partitions_def=RAIN_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    metadata={
        "schema": "weather",
        "partition_expr": "window_start",
        "dagster/column_schema": NEXT_HOUR_COLUMNS,
    },
)
def rolling_precipitation_sum(
    context: dg.AssetExecutionContext,
    rain_forecasts: pl.DataFrame,
    coordinates: CoordinateRegistry,
    openweathermap: OpenWeatherMapResource,
) -> pl.DataFrame:
    """How much rain falls in the next hour at each coordinate: one number per lat-lon pair.

    The sum of rate/60 (mm/h -> mm per minute) over the forecast minutes in
    [partition minute, +60 min). Null with minutes_covered = 0 where there is no nowcast.
    """
    totals = next_hour_precipitation(rain_forecasts)
    latest = totals.filter(pl.col("window_start") == pl.col("window_start").max())
    office = latest.filter(pl.col("location_id") == OFFICE_LOCATION_ID)
    names = {loc.location_id: loc.name for loc in coordinates.load()}
    metadata: dict[str, object] = {
        "source": openweathermap.source_mode,
        "coordinates": latest.height,
        "coordinates_with_nowcast": latest.filter(pl.col("minutes_covered") > 0).height,
        "wettest": dg.MetadataValue.md(wettest_markdown(latest, names)),
        "dagster/row_count": totals.height,
    }
    if office.height and office["next_hour_precipitation_mm"][0] is not None:
        metadata["office_next_hour_mm"] = dg.MetadataValue.float(
            float(office["next_hour_precipitation_mm"][0])
        )
    context.add_output_metadata(metadata)
    return totals


def _checked_window(
    context: dg.AssetCheckExecutionContext, conn: duckdb.DuckDBPyConnection, table: str, column: str
) -> tuple[datetime, datetime] | None:
    """The run's partition window (naive UTC), or the latest stored minute when run alone."""
    op_context = context.op_execution_context
    if op_context.has_partition_key or op_context.has_partition_key_range:
        window = op_context.partition_time_window
        return (
            window.start.astimezone(UTC).replace(tzinfo=None),
            window.end.astimezone(UTC).replace(tzinfo=None),
        )
    latest = conn.execute(f"select max({column}) from weather.{table}").fetchone()[0]
    return None if latest is None else (latest, latest + timedelta(minutes=1))


def _query_window(
    context: dg.AssetCheckExecutionContext,
    warehouse: DuckDBResource,
    table: str,
    column: str,
    sql: str,
) -> tuple | None:
    """Run ``sql`` (with ``{where}`` for the window predicate) against the checked minutes."""
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
        "fetched_minute",
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
        "fetched_minute",
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
        "fetched_minute",
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
        "window_start",
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


RAIN_ASSETS = [rain_forecasts, rolling_precipitation_sum]
RAIN_CHECKS = [
    rain_forecasts_unique_per_minute,
    rain_forecasts_rates_non_negative,
    rain_forecasts_nowcast_coverage,
    rolling_precipitation_sum_one_row_per_coordinate,
]

rain_minute_job = dg.define_asset_job(
    name="rain_minute_job",
    selection=dg.AssetSelection.assets(*RAIN_ASSETS),
    executor_def=dg.in_process_executor,
    description="One minute of the nowcast stream: fetch, then the next-hour totals.",
)
