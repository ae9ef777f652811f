"""End to end: minute partitions loaded from the stream, against temp dirs and a real nats-server.

(i) no log: the CLI path fetches on demand, with the numbers the platform always computed;
(ii) the minute's messages in the log (no processor): loaded from the log, same numbers;
(iii) the processor's minute files: loaded from them; (iv) a shard missing: null rows, named;
(v) Dagster down for 10 minutes: one sensor evaluation requests them all, once, oldest first;
(vi) live mode past the log's retention: fails saying so.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from resources import clock
from resources.jetstream import jetstream
from resources.settings import load_settings
from resources.source import SourceConfig
from sensors.rain import rain_minute_sensor
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.client import OpenWeatherMapResource, fetch_nowcasts
from weather_assets.rain.loading import archive_key
from weather_assets.rain.stream import minute_store
from weather_assets.rain.stream.log import (
    MINUTES,
    PROCESSOR,
    PRODUCERS,
    LogConfig,
    ensure_log,
    minute_kv_key,
)
from weather_assets.rain.stream.messages import parse_messages
from weather_assets.rain.stream.minute_fetch import FetchedMinute, fetch_minute, publish
from weather_assets.rain.stream.minute_log import minute_message_count
from weather_assets.rain.stream.progress import MinuteProgress
from weather_assets.rain.transforms import forecasts_frame, next_hour_precipitation

BLOCKING = {
    "rain_forecasts_unique_per_minute",
    "rain_forecasts_rates_non_negative",
    "rolling_precipitation_sum_one_row_per_coordinate",
}


def minute_ago(minutes: int) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes)


def key(minute: datetime) -> str:
    return minute.strftime(MINUTE_FORMAT)


def materialize(resources, instance, minute: datetime, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS],
        resources=resources,
        instance=instance,
        partition_key=key(minute),
        **kwargs,
    )


def metadata(result, node: str = "rain_forecasts") -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def stored(resources, minute: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    naive = minute.replace(tzinfo=None)
    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        forecasts = conn.execute(
            "select * from weather.rain_forecasts where fetched_minute = ? "
            "order by location_id, forecast_at",
            [naive],
        ).pl()
        totals = conn.execute(
            "select * from weather.rolling_precipitation_sum where window_start = ? "
            "order by location_id",
            [naive],
        ).pl()
    return forecasts, totals


def as_before(resources, minute: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The minute as the platform computed it before the stream: every coordinate fetched in
    one process on the partition minute's clock, ``forecasts_frame`` and the next-hour sum."""
    owm: OpenWeatherMapResource = resources["openweathermap"]
    shards = resources["coordinates"].shards(owm.calls_per_minute)
    clients = owm.clients_for(len(shards), clock=lambda: minute)
    results = fetch_nowcasts(shards, clients, max_workers=owm.max_workers)
    forecasts = forecasts_frame(((r.location, r.rows) for r in results), minute)
    totals = next_hour_precipitation(forecasts)
    return forecasts.sort("location_id", "forecast_at"), totals.sort("location_id")


def assert_same_numbers(resources, minute: datetime) -> None:
    forecasts, totals = stored(resources, minute)
    expected_forecasts, expected_totals = as_before(resources, minute)
    assert forecasts.equals(expected_forecasts)
    assert totals.equals(expected_totals)
    assert totals["minutes_covered"].max() == 60


def produce(resources, minute: datetime, shards: list[int] | None = None) -> FetchedMinute:
    """What a producer fetches for ``minute`` (all shards, or those given), simulated."""
    owm: OpenWeatherMapResource = resources["openweathermap"]
    all_shards = resources["coordinates"].shards(owm.calls_per_minute)
    chosen = range(len(all_shards)) if shards is None else shards
    return fetch_minute(
        owm,
        {i: all_shards[i] for i in chosen},
        len(all_shards),
        minute,
        producer="producer-a",
        now=lambda: minute,
    )


def on_log(url: str, work):
    async def main():
        async with jetstream(url) as (_, js):
            return await work(js)

    return asyncio.run(main())


async def setup_log(js, url: str) -> None:
    await ensure_log(js, LogConfig.from_settings(load_settings()))


@pytest.fixture
def stream_env(platform_env, nats_server):
    """The platform's temp dirs, with NATS_URL at a real server whose stream is set up."""
    on_log(nats_server.url, lambda js: setup_log(js, nats_server.url))
    return nats_server


# (i) ---------------------------------------------------------------------------------------------


def test_without_a_log_the_cli_fetches_on_demand_as_before(platform_resources, instance):
    minute = minute_ago(6)
    result = materialize(platform_resources, instance, minute)
    assert result.success
    assert_same_numbers(platform_resources, minute)
    meta = metadata(result)
    assert meta["loaded_from"] == "fetched on demand"
    assert meta["completeness"] == "complete"
    assert (meta["missing_coordinates"], meta["missing_ids"]) == (0, "none")
    assert meta["log"].startswith("not used: NATS at nats://127.0.0.1:1 is not reachable")
    assert meta["published_to_log"].startswith("not published")
    assert "lag_messages" not in meta
    store = platform_resources["object_store"]
    assert meta["raw_payloads"] == store.uri(archive_key(store, minute))
    assert checks(result)["rain_stream_lag"] is False, "NATS_URL is set: a log is expected"
    assert all(checks(result)[name] for name in BLOCKING)


# (ii) --------------------------------------------------------------------------------------------


def test_a_minute_in_the_log_is_loaded_from_it(stream_env, platform_resources, instance):
    minute = minute_ago(6)
    fetched = produce(platform_resources, minute)
    report = on_log(stream_env.url, lambda js: publish(js, fetched.messages))
    assert report.published == len(fetched.messages)
    health = {
        "producer": "producer-a",
        "shards": [0],
        "last_published_minute": int(minute.timestamp()),
        "messages": len(fetched.messages),
        "retries_by_reason": {"HTTP 503": 2},
        "updated_at": clock.utcnow().timestamp(),
    }

    async def report_health(js):
        await (await js.key_value(PRODUCERS)).put("producer-a", json.dumps(health).encode())

    on_log(stream_env.url, report_health)

    result = materialize(platform_resources, instance, minute)
    assert result.success
    assert_same_numbers(platform_resources, minute)
    meta = metadata(result)
    assert meta["loaded_from"] == "log"
    assert meta["completeness"] == "complete"
    assert "published_to_log" not in meta, "nothing was fetched"
    assert meta["producers_alive"] == 1
    assert f"| producer-a | yes | {minute:%Y-%m-%d %H:%M} | 0 |" in meta["producers"]
    assert (meta["log"], meta["lag_messages"], meta["lag_minutes"]) == (
        "reachable",
        len(fetched.messages),  # no processor: every message is still unprocessed
        0,
    )
    assert checks(result)["rain_stream_lag"], "under two minutes of messages behind"
    store = platform_resources["object_store"]
    archived = gzip.decompress(store.get_bytes(archive_key(store, minute))).decode().splitlines()
    assert [json.loads(line)["payload"] for line in archived] == [
        r.payload for r in fetched.results
    ]

    # A minute the log does not hold: fetched on demand, and published for the processor.
    other = minute_ago(8)
    result = materialize(platform_resources, instance, other)
    meta = metadata(result)
    assert meta["loaded_from"] == "fetched on demand"
    assert meta["published_to_log"] == f"{len(fetched.messages)} published, 0 already in the log"
    assert on_log(stream_env.url, lambda js: minute_message_count(js, other)) == len(
        fetched.messages
    )
    assert_same_numbers(platform_resources, other)
    again = materialize(platform_resources, instance, other)
    assert metadata(again)["loaded_from"] == "log"
    assert_same_numbers(platform_resources, other)


def test_a_server_without_the_rain_stream_is_not_used(
    platform_env, nats_server, platform_resources, instance
):
    minute = minute_ago(6)
    result = materialize(platform_resources, instance, minute)
    assert result.success
    meta = metadata(result)
    assert meta["loaded_from"] == "fetched on demand"
    assert meta["published_to_log"].startswith("not published: NATS at")
    assert_same_numbers(platform_resources, minute)


def test_the_lag_check_warns_when_the_processor_falls_behind(
    stream_env, platform_resources, instance
):
    minutes = [minute_ago(m) for m in (9, 8, 7)]
    messages = [m for minute in minutes for m in produce(platform_resources, minute).messages]
    on_log(stream_env.url, lambda js: publish(js, messages))

    def processor_at(last_seq: int) -> None:
        async def put(js):
            state = {"last_seq": last_seq, "batch_id": 3, "updated_at": 0, "dead_letters_total": 0}
            await (await js.key_value(PROCESSOR)).put("state", json.dumps(state).encode())

        on_log(stream_env.url, put)

    def lag_check(result) -> dg.AssetCheckEvaluation:
        (evaluation,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "rain_stream_lag"
        ]
        return evaluation

    processor_at(0)  # three minutes of messages, none processed
    behind = materialize(platform_resources, instance, minutes[0])
    assert metadata(behind)["lag_messages"] == len(messages)
    evaluation = lag_check(behind)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert f"the processor {len(messages)} messages behind the log" in evaluation.description
    assert behind.success, "a warning does not fail the run"

    processor_at(len(messages))  # caught up
    caught_up = materialize(platform_resources, instance, minutes[1])
    assert metadata(caught_up)["lag_messages"] == 0
    assert lag_check(caught_up).passed


# (iii) -------------------------------------------------------------------------------------------


def test_the_processor_output_is_loaded_first(platform_resources, instance):
    minute = minute_ago(6)
    store = platform_resources["object_store"]
    minute_store.write_batch(store, 0, parse_messages(produce(platform_resources, minute).raw()))
    result = materialize(platform_resources, instance, minute)
    assert result.success
    assert_same_numbers(platform_resources, minute)
    meta = metadata(result)
    assert meta["loaded_from"] == "processor output"
    # The processor's files hold no payloads, and there is no log to read them back from.
    assert meta["raw_payloads"] == "not archived"
    assert meta["raw_payloads_not_archived"].startswith(key(minute))


# (iv) --------------------------------------------------------------------------------------------


def test_a_missing_shard_gives_null_rows_named_in_the_metadata(platform_env, monkeypatch, instance):
    monkeypatch.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "20")  # 60 coordinates, 3 shards
    from definitions import build_resources

    resources = build_resources(load_settings())
    shards = resources["coordinates"].shards(20)
    minute = minute_ago(6)
    store = resources["object_store"]
    minute_store.write_batch(store, 0, parse_messages(produce(resources, minute, [0, 2]).raw()))

    result = materialize(resources, instance, minute)
    assert result.success
    meta = metadata(result)
    missing = sorted(loc.location_id for loc in shards[1])
    assert meta["missing_coordinates"] == len(missing) == 20
    assert meta["missing_ids"] == ", ".join(missing)
    assert meta["completeness"].endswith("shards 1 of 3 missing after the grace period")
    assert meta["failed_coordinates"] == 0
    forecasts, totals = stored(resources, minute)
    assert totals.height == 60, "every coordinate keeps a row"
    nulls = forecasts.filter(pl.col("location_id").is_in(missing))
    assert nulls.height == 20 and nulls["forecast_at"].null_count() == 20
    assert totals.filter(pl.col("location_id").is_in(missing))["minutes_covered"].max() == 0
    verdicts = checks(result)
    assert all(verdicts[name] for name in BLOCKING)
    assert verdicts["rain_forecasts_nowcast_coverage"] is False  # a warning: 2/3 have one


# (v) ---------------------------------------------------------------------------------------------


def test_minutes_missed_while_dagster_was_down_are_requested_once(
    stream_env, platform_resources, instance
):
    minutes = [minute_ago(m) for m in range(25, 15, -1)]  # 10 consecutive minutes, oldest first
    n_shards = len(platform_resources["coordinates"].shards(60))

    async def stream_them(js):
        bucket = await js.key_value(MINUTES)
        for minute in minutes:  # producers and processor ran while Dagster was down
            await publish(js, produce(platform_resources, minute).messages)
            progress = MinuteProgress(minute, n_shards, frozenset(range(n_shards)))
            await bucket.put(minute_kv_key(minute), progress.to_json())

    on_log(stream_env.url, stream_them)
    cursor = key(minutes[0] - timedelta(minutes=3))  # the last minute requested before

    first = rain_minute_sensor(dg.build_sensor_context(cursor=cursor, instance=instance))
    assert isinstance(first, dg.SensorResult)
    requests = first.run_requests
    assert [r.run_key for r in requests] == [key(m) for m in minutes], "all 10, oldest first"
    assert [r.partition_key for r in requests] == [key(m) for m in minutes]
    assert {r.tags["rain/completeness"] for r in requests} == {"complete"}
    assert first.cursor == key(minutes[-1])

    second = rain_minute_sensor(dg.build_sensor_context(cursor=first.cursor, instance=instance))
    assert isinstance(second, dg.SkipReason), "each minute is requested exactly once"

    for request in requests:
        result = dg.materialize(
            [*RAIN_ASSETS, *RAIN_CHECKS],
            resources=platform_resources,
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
        )
        assert result.success
        assert metadata(result)["loaded_from"] == "log"
        verdicts = checks(result)
        assert set(verdicts) >= BLOCKING and all(verdicts[name] for name in BLOCKING)
        assert "rain_stream_lag" in verdicts
    with duckdb.connect(platform_resources["warehouse"].database, read_only=True) as conn:
        per_minute = conn.execute(
            "select window_start, count(*), count(distinct location_id)"
            " from weather.rolling_precipitation_sum group by 1 order by 1"
        ).fetchall()
    coordinates = len(platform_resources["coordinates"].load())
    assert per_minute == [(m.replace(tzinfo=None), coordinates, coordinates) for m in minutes]


def test_the_sensor_skips_saying_why_without_a_log(platform_env, instance):
    result = rain_minute_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason)
    assert "not reachable" in result.skip_message
    assert "dagster asset materialize" in result.skip_message


# (vi) --------------------------------------------------------------------------------------------


def test_live_mode_past_the_logs_retention_fails_saying_so(
    platform_resources, monkeypatch, instance
):
    monkeypatch.setenv("RAIN_STREAM_MAX_AGE_HOURS", "1")
    resources = dict(platform_resources)
    resources["openweathermap"] = OpenWeatherMapResource(
        source=SourceConfig(mode="live"), api_key="not-used"
    )
    result = dg.materialize(
        RAIN_ASSETS[:1],
        resources=resources,
        instance=instance,
        partition_key=key(minute_ago(180)),
        raise_on_error=False,
    )
    assert not result.success
    message = result.failure_data_for_node("rain_forecasts").error.message
    assert "older than the log's retention (1 h, RAIN_STREAM_MAX_AGE_HOURS)" in message
    assert "live mode cannot fetch it" in message
