"""Dagster wiring of the minute rain nowcast: the forecasts of each minute and their next-hour
totals (checks in ``checks``, jobs and schedules in ``jobs``)."""

import functools
import gzip
import json
import time
from collections import Counter
from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from resources import clock
from resources.asset_metadata import warehouse_table
from resources.http import ApiAuthError
from resources.object_store import ObjectStore
from resources.warehouse import DUCKDB_POOL
from weather_assets.locations import CoordinateRegistry
from weather_assets.partitions import MINUTE_FORMAT, RAIN_PARTITIONS, window_starts
from weather_assets.rain.client import NowcastResult, OpenWeatherMapResource, fetch_nowcasts
from weather_assets.rain.transforms import (
    forecasts_frame,
    next_hour_precipitation,
    stale_minute_error,
    wettest_markdown,
)

OFFICE_LOCATION_ID = "office"
RAW_PAYLOAD_PREFIX = "raw/openweathermap/onecall"

_COORD_COLUMNS = [
    ("location_id", "VARCHAR", "Registry id (locations.csv)."),
    ("lat", "DOUBLE", "Latitude, WGS84 degrees."),
    ("lon", "DOUBLE", "Longitude, WGS84 degrees."),
]

_FORECAST_COLUMNS = [
    *_COORD_COLUMNS,
    ("fetched_minute", "TIMESTAMP", "UTC minute of the call (the partition)."),
    (
        "forecast_at",
        "TIMESTAMP",
        "UTC minute forecast, 61 from the minute after the call; null when the API had no nowcast.",
    ),
    ("precipitation_mm_per_h", "DOUBLE", "One Call 3.0 minutely.precipitation: a rate in mm/h."),
]

_NEXT_HOUR_COLUMNS = [
    *_COORD_COLUMNS,
    (
        "window_start",
        "TIMESTAMP",
        "UTC minute of the call (the partition); the window is the 60 forecast minutes after it.",
    ),
    (
        "window_end",
        "TIMESTAMP",
        "window_start + 60 min, inclusive: minutes in (window_start, window_end].",
    ),
    (
        "next_hour_precipitation_mm",
        "DOUBLE",
        "Sum of rate/60 over the covered minutes, in mm; null with no nowcast.",
    ),
    ("minutes_covered", "BIGINT", "Forecast minutes inside the window (0-60)."),
]


# Both assets: DuckDB tables of minute partitions, written in the duckdb pool; a range of
# minutes is one run.
minute_table = functools.partial(
    dg.asset,
    group_name="weather",
    kinds={"python", "polars", "duckdb"},
    partitions_def=RAIN_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
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


@minute_table(
    metadata=warehouse_table("weather", *_FORECAST_COLUMNS, partition_expr="fetched_minute"),
)
def rain_forecasts(
    context: dg.AssetExecutionContext,
    config: RainFetchConfig,
    openweathermap: OpenWeatherMapResource,
    coordinates: CoordinateRegistry,
    object_store: ObjectStore,
) -> pl.DataFrame:
    """The One Call 3.0 minutely nowcast of every registered coordinate, fetched in the minute.

    One row per coordinate per forecast minute (61 from the minute after the call, as the real
    API answers). Coordinates fan out over shards, each within one API key's per-minute limit. A
    coordinate without a nowcast keeps a single row with null forecast_at, so it is never
    silently dropped.
    """
    shards = coordinates.shards(openweathermap.calls_per_minute)
    n_locations = sum(len(s) for s in shards)
    live = openweathermap.source.live
    frames, failed, raw_uris = [], [], []
    retry_reasons: Counter[str] = Counter()
    started = time.perf_counter()
    for minute in window_starts(context.partition_time_window, timedelta(minutes=1)):
        if live and (reason := stale_minute_error(minute, clock.utcnow())):
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
            "source": openweathermap.source.mode,
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


@minute_table(
    metadata=warehouse_table("weather", *_NEXT_HOUR_COLUMNS, partition_expr="window_start"),
)
def rolling_precipitation_sum(
    context: dg.AssetExecutionContext,
    rain_forecasts: pl.DataFrame,
    coordinates: CoordinateRegistry,
    openweathermap: OpenWeatherMapResource,
) -> pl.DataFrame:
    """How much rain falls in the next hour at each coordinate: one number per lat-lon pair.

    The sum of rate/60 (mm/h -> mm per minute) over the 60 forecast minutes after the call, in
    (partition minute, +60 min]. Null with minutes_covered = 0 where there is no nowcast.
    """
    totals = next_hour_precipitation(rain_forecasts)
    latest = totals.filter(pl.col("window_start") == pl.col("window_start").max())
    office = latest.filter(pl.col("location_id") == OFFICE_LOCATION_ID)
    names = {loc.location_id: loc.name for loc in coordinates.load()}
    metadata: dict[str, object] = {
        "source": openweathermap.source.mode,
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


RAIN_ASSETS = [rain_forecasts, rolling_precipitation_sum]
