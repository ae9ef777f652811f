"""Dagster wiring of the minute rain nowcast: the forecasts of each minute and their next-hour
totals (checks in ``checks``, jobs and schedules in ``jobs``).

A minute's rows come from the stream (``loading``: the processor's output, else the log, else
fetched on demand through the producer code path), so a minute is the same whether the stream
ran (``make run``) or a user materializes it from the CLI alone. ``rain_forecasts`` is a graph
of two steps so that this network I/O runs outside the single ``duckdb`` pool slot: the loading
step stages the minutes (``staging``), the pooled writer only writes them.
"""

import functools
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from resources import clock
from resources.asset_metadata import warehouse_table
from resources.http import ApiAuthError
from resources.jetstream import nats_url_from
from resources.object_store import ObjectStore
from resources.settings import load_settings
from resources.warehouse import DUCKDB_POOL
from weather_assets.locations import CoordinateRegistry
from weather_assets.partitions import MINUTE_FORMAT, RAIN_PARTITIONS, window_starts
from weather_assets.rain import staging
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.loading import RAW_PAYLOAD_PREFIX as RAW_PAYLOAD_PREFIX
from weather_assets.rain.loading import (
    MinuteLoader,
    MinuteSummary,
    MinuteUnavailable,
    NatsMinuteLog,
    redact_url,
    sources_text,
    stream_lag,
    summarize,
    write_archive,
)
from weather_assets.rain.stream.leases import is_alive
from weather_assets.rain.stream.log import LEASE_TTL_S
from weather_assets.rain.stream.messages import forecast_rows
from weather_assets.rain.stream.minute_fetch import FetchedMinute, fetch_minute
from weather_assets.rain.stream.minute_log import LogReadError, producers_markdown
from weather_assets.rain.transforms import (
    next_hour_precipitation,
    wettest_markdown,
)

OFFICE_LOCATION_ID = "office"
RAIN_FORECASTS_KEY = dg.AssetKey("rain_forecasts")

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


# DuckDB tables of minute partitions, written in the duckdb pool; a range of minutes is one
# run (rain_forecasts, a graph of a loading and a writing step, is declared alike below).
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
    """Fail the partition if more than this share of coordinates has an error record (the API
    still failed after the producer's retries) or an unreadable message."""
    archive_raw_payloads: bool = True
    """Keep the API's answers, as received, in the object store (for audit and replay)."""


# The producer name on messages a Dagster run fetched on demand (ids do not depend on it).
ON_DEMAND_PRODUCER = "dagster"
# Missing or failed coordinates listed in metadata and failure messages.
LISTED = 20


def newest_loaded_minute(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, *also: datetime
) -> datetime | None:
    """The newest minute partition materialized (or being loaded: ``also``)."""
    keys = instance.get_materialized_partitions(asset_key)
    minutes = [datetime.strptime(max(keys), MINUTE_FORMAT).replace(tzinfo=UTC)] if keys else []
    minutes += list(also)
    return max(minutes) if minutes else None


def minutes_without_rows(forecasts: pl.DataFrame, minutes: list[datetime]) -> list[datetime]:
    """The minutes with no ``rain_forecasts`` row at all: a loaded minute always keeps one row
    per coordinate, so none means the rows were deleted (retention) or never loaded."""
    present = set(forecasts["fetched_minute"].unique().to_list())
    return [m for m in minutes if clock.naive_utc(m) not in present]


def raw_rows_gone_text(gone: list[datetime]) -> str:
    listed = ", ".join(f"{m:{MINUTE_FORMAT}}" for m in gone[:LISTED])
    more = f" and {len(gone) - LISTED} more" if len(gone) > LISTED else ""
    return (
        f"rain_forecasts has no rows for minute(s) {listed}{more}: the raw rows are gone (rain "
        "retention deletes them after RAIN_RAW_RETENTION_HOURS) or were never loaded, so the "
        "next-hour totals cannot be recomputed; the existing totals are kept. Materialize "
        "rain_forecasts for these minutes first (simulated mode can refetch any minute; live "
        "mode only the minute in progress)."
    )


def _failure_text(summary: MinuteSummary) -> str:
    listed = [f"{location_id}: {error}" for location_id, error in summary.failed[:5]]
    listed += [f"unreadable message: {reason}" for reason in summary.dead_reasons[:5]]
    return "; ".join(listed[:5])


@dg.op(out=dg.Out(dg.Nothing))
def load_rain_minutes(
    context: dg.OpExecutionContext,
    config: RainFetchConfig,
    openweathermap: OpenWeatherMapResource,
    coordinates: CoordinateRegistry,
    object_store: ObjectStore,
) -> None:
    """Gathers the run's minutes (``loading.MinuteLoader``: processor output, log, on-demand
    fetch), archives their raw payloads and stages rows and metadata for
    ``write_rain_forecasts``. Outside the duckdb pool: all of it is network I/O (the API, the
    log, the object store), which must not hold the slot every warehouse writer waits for."""
    settings = load_settings()
    locations = coordinates.load()
    shards = coordinates.shards(openweathermap.shard_size())
    n_locations = len(locations)
    live = openweathermap.source.live
    grace = timedelta(seconds=settings.rain_minute_grace_seconds)
    url = nats_url_from(settings)
    log = NatsMinuteLog(url)
    fetched_minutes: list[FetchedMinute] = []

    def fetch(minute: datetime) -> FetchedMinute:
        fetched = fetch_minute(
            openweathermap,
            dict(enumerate(shards)),
            len(shards),
            minute,
            producer=ON_DEMAND_PRODUCER,
            # Simulated: the partition minute is "now", so a backfill reproduces; live mode
            # asks the real API, which answers for the real present.
            now=clock.utcnow if live else (lambda: minute),
            logger=context.log,
        )
        fetched_minutes.append(fetched)
        return fetched

    loader = MinuteLoader(
        store=object_store,
        log=log,
        fetch=fetch,
        live=live,
        log_max_age=timedelta(hours=settings.rain_stream_max_age_hours),
        log_description=f"the log ({redact_url(url)})",
    )
    frames: list[pl.DataFrame] = []
    summaries: list[MinuteSummary] = []
    published: list[str] = []
    raw_uris: list[str] = []
    not_archived: list[str] = []
    started = time.perf_counter()
    minutes = window_starts(context.partition_time_window, timedelta(minutes=1))
    for minute in minutes:
        try:
            loaded = loader.load(minute)
        except (MinuteUnavailable, LogReadError) as exc:
            raise dg.Failure(str(exc)) from None
        except ApiAuthError as exc:
            raise dg.Failure(str(exc)) from None
        summary = summarize(loaded, locations, clock.utcnow(), grace)
        summaries.append(summary)
        label = f"{minute:{MINUTE_FORMAT}}"
        if summary.failure_count > config.max_failed_share * n_locations:
            raise dg.Failure(
                f"{summary.failure_count} of {n_locations} coordinates failed for minute {label} "
                f"(more than {config.max_failed_share:.0%}): {_failure_text(summary)}"
            )
        for location_id, error in summary.failed:
            context.log.warning(f"{location_id} kept without a nowcast: {error}")
        for reason in summary.dead_reasons:
            context.log.warning(f"minute {label}: an unreadable message was left out: {reason}")
        if summary.missing_ids:
            context.log.warning(
                f"minute {label} ({loaded.source}, {summary.completeness}): "
                f"{len(summary.missing_ids)} coordinates have no message and keep a null row: "
                + ", ".join(summary.missing_ids[:LISTED])
            )
        for note in loaded.notes:
            context.log.info(f"minute {label}: {note}")
        if loaded.published:
            published.append(loaded.published)
        if config.archive_raw_payloads:
            lines = loader.archive(loaded)
            if lines is None:
                not_archived.append(label)
            else:
                raw_uris.append(write_archive(object_store, minute, lines))
        frames.append(forecast_rows(loaded.parsed, minute, locations))

    forecasts = pl.concat(frames)
    retry_reasons: Counter[str] = Counter()
    for fetched in fetched_minutes:
        retry_reasons.update(fetched.retries_by_reason)
    failed = sorted({i for s in summaries for i, _ in s.failed})
    missing = sorted({i for s in summaries for i in s.missing_ids})
    incomplete = [s for s in summaries if s.completeness != "complete"]
    with_nowcast = forecasts.filter(pl.col("forecast_at").is_not_null())["location_id"].n_unique()
    metadata: dict[str, object] = {
        "source": openweathermap.source.mode,
        "loaded_from": sources_text(s.source for s in summaries),
        "coordinates": n_locations,
        "shards": len(shards),
        "minutes": len(frames),
        "completeness": "complete"
        if not incomplete
        else "; ".join(f"{s.minute:%H:%M} {s.completeness}" for s in incomplete[:10]),
        "coordinates_with_nowcast": with_nowcast,
        "failed_coordinates": len(failed),
        "failed_ids": ", ".join(failed[:LISTED]) or "none",
        "missing_coordinates": sum(len(s.missing_ids) for s in summaries),
        "missing_ids": ", ".join(missing[:LISTED]) or "none",
        "dead_letters": sum(len(s.dead_reasons) for s in summaries),
        "http_retries": retry_reasons.total(),
        "http_retries_by_reason": dict(sorted(retry_reasons.items())),
        "fetch_seconds": round(time.perf_counter() - started, 3),
        "raw_payloads": raw_uris[-1] if raw_uris else "not archived",
        "dagster/row_count": forecasts.height,
    }
    if not_archived:  # loaded from the processor's files while the log did not hold them
        metadata["raw_payloads_not_archived"] = (
            ", ".join(not_archived[:LISTED])
            + ": the processor's output holds no payloads and the log did not hold the minute"
        )
    if published:
        metadata["published_to_log"] = "; ".join(dict.fromkeys(published))
    status = log.status()
    if status is None:
        metadata["log"] = f"not used: {log.unreachable}"
    elif not status.has_stream:
        metadata["log"] = "reachable, without the rain stream (make run creates it)"
    else:
        lag = stream_lag(
            status,
            newest_loaded_minute(context.instance, RAIN_FORECASTS_KEY, minutes[-1]),
            clock.utcnow(),
        )
        metadata["log"] = "reachable"
        now = clock.utcnow().timestamp()
        alive = [h for h in status.producers if is_alive(h, now, LEASE_TTL_S)]
        metadata["producers_alive"] = len(alive)
        metadata["producers"] = producers_markdown(status.producers, now, LEASE_TTL_S)
        metadata["lag_messages"] = lag.messages_behind
        metadata["lag_minutes"] = len(lag.minutes_not_loaded)
    window = context.partition_time_window
    uri = staging.stage(
        object_store,
        root_run_id(context.run),
        (window.start, window.end),
        forecasts,
        metadata,
        markdown=("producers",),
    )
    context.log.info(f"staged {forecasts.height} rows for the writer at {uri}")


@dg.op(ins={"staged": dg.In(dg.Nothing)}, pool=DUCKDB_POOL)
def write_rain_forecasts(context: dg.OpExecutionContext, object_store: ObjectStore) -> pl.DataFrame:
    """Reads what ``load_rain_minutes`` staged and hands it to the warehouse IO manager: the
    only part of ``rain_forecasts`` that holds the duckdb pool slot."""
    window = context.partition_time_window
    try:
        staged = staging.read_staged(
            object_store, root_run_id(context.run), (window.start, window.end)
        )
    except staging.StagedMinutesMissing as exc:
        raise dg.Failure(str(exc)) from None
    context.add_output_metadata(
        {
            key: dg.MetadataValue.md(value) if key in staged.markdown else value
            for key, value in staged.metadata.items()
        }
    )
    return staged.forecasts


@dg.success_hook(required_resource_keys={"object_store"})
def drop_staged_minutes(context: dg.HookContext) -> None:
    """Deletes the run's staged minutes once they are written (Dagster runs success hooks after
    the step's pool slot is freed); a failed write keeps them for a re-execution."""
    run = context.instance.get_run_by_id(context.run_id)
    store: ObjectStore = context.resources.object_store
    deleted = store.delete(staging.staged_keys_of_run(store, root_run_id(run)))
    context.log.info(f"deleted {deleted} staged objects")


def root_run_id(run: dg.DagsterRun) -> str:
    """The run a re-execution descends from: what both steps key the staged minutes by."""
    return run.root_run_id or run.run_id


@dg.config_mapping
def _fetch_config(config: RainFetchConfig) -> dict:
    # Run config keeps its shape: ops: {rain_forecasts: {config: {...}}}.
    return {"load_rain_minutes": {"config": config.model_dump()}}


@dg.graph_asset(
    group_name="weather",
    kinds={"python", "polars", "duckdb"},
    partitions_def=RAIN_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata=warehouse_table("weather", *_FORECAST_COLUMNS, partition_expr="fetched_minute"),
    config=_fetch_config,
)
def rain_forecasts():
    """The One Call 3.0 minutely nowcast of every registered coordinate, for the minute.

    Loaded from the stream (the processor's minute files, else the log's messages of the
    minute), or fetched on demand through the producers' code path when the stream does not
    hold the minute (live mode: only the minute in progress; simulated: any minute). One row
    per coordinate per forecast minute (61 from the minute after the call, as the real API
    answers). A coordinate without a nowcast (an error record, or no message at all because
    its shard's producer was down) keeps a single row with null forecast_at, counted in the
    metadata, so it is never silently dropped.

    Two steps: ``load_rain_minutes`` (all the network I/O, outside the duckdb pool) stages the
    minutes in the object store; ``write_rain_forecasts`` (in the pool) writes them.
    """
    return write_rain_forecasts.with_hooks({drop_staged_minutes})(load_rain_minutes())


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
    Fails, keeping the stored totals, when a minute's raw rows are gone (retention).
    """
    minutes = window_starts(context.partition_time_window, timedelta(minutes=1))
    if gone := minutes_without_rows(rain_forecasts, minutes):
        raise dg.Failure(raw_rows_gone_text(gone))
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
