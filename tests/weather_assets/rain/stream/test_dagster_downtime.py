"""Dagster stopped while the stream runs: a real producer and the real Spark processor fill ten
minutes with no Dagster process alive; the first sensor evaluation after the "restart" requests
every one of them, oldest first, once, and each materializes from the processor's output with
its checks. (Dagster here is the sensor and ``dg.materialize`` in this process: nothing of it
runs while the minutes stream.)

The producer runs on the test-only fast clock (a minute lasts 10 s, one hour behind the wall
clock), so ten minutes of stream take about 100 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb

from definitions import build_resources
from resources.jetstream import run_sync
from resources.settings import load_settings
from sensors.rain import rain_minute_sensor
from tests.weather_assets.rain.stream.processor_helpers import caught_up, wait_for
from tests.weather_assets.rain.stream.test_producer import (
    REGISTRY,
    fast_clock,
    write_locations,
)
from weather_assets.locations import load_locations
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.stream.log import MINUTES, minute_from_kv_key
from weather_assets.rain.stream.progress import MinuteProgress

DOWNTIME_MINUTES = 10


def logged_minutes(url: str, *, complete_only: bool) -> list[datetime]:
    """The minutes ``rain_minutes`` holds progress for (only the complete ones, if asked)."""

    async def read(js):
        bucket = await js.key_value(MINUTES)
        try:
            keys = await bucket.keys()
        except Exception:  # no keys yet
            return []
        done = []
        for key in keys:
            entry = await bucket.get(key)
            if not complete_only or MinuteProgress.from_json(entry.value).complete:
                done.append(minute_from_kv_key(key))
        return sorted(done)

    return run_sync(url, read)


def start(module: str, *args: str, log_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=dict(os.environ),
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_minutes_streamed_while_dagster_was_down_are_loaded_once_after(
    platform_env, nats_server, monkeypatch, instance, tmp_path
):
    locations = load_locations(REGISTRY)[:6]
    monkeypatch.setenv("LOCATIONS_FILE", str(write_locations(tmp_path / "loc.csv", locations)))
    monkeypatch.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "3")  # two shards
    url = nats_server.url
    processor = start("weather_assets.rain.stream.processor", log_path=tmp_path / "processor.log")
    producer = start(
        "weather_assets.rain.stream.producer",
        "--id",
        "p1",
        "--clock",
        fast_clock(),
        log_path=tmp_path / "producer.log",
    )
    try:
        wait_for(
            lambda: len(logged_minutes(url, complete_only=True)) >= DOWNTIME_MINUTES,
            400,
            f"{DOWNTIME_MINUTES} complete minutes in the log",
            every_s=1.0,
        )
        stop(producer)
        wait_for(caught_up(url), 120, "the processor to catch up")
    finally:
        stop(producer)
        stop(processor)
    assert processor.returncode == 0, (tmp_path / "processor.log").read_text()[-3000:]

    # Dagster comes back (its resources read the same settings as the services): its cursor is the minute before the first one streamed. A minute the
    # producer was stopped in may lack a shard: its grace period has passed, so it comes too.
    resources = build_resources(load_settings())
    minutes = logged_minutes(url, complete_only=False)
    assert len(minutes) >= DOWNTIME_MINUTES
    assert minutes == [minutes[0] + timedelta(minutes=i) for i in range(len(minutes))]
    cursor = (minutes[0] - timedelta(minutes=1)).strftime(MINUTE_FORMAT)
    first = rain_minute_sensor(dg.build_sensor_context(cursor=cursor, instance=instance))
    assert isinstance(first, dg.SensorResult)
    requested = [r.partition_key for r in first.run_requests]
    keys = [m.strftime(MINUTE_FORMAT) for m in minutes]
    assert requested == keys, "every completed minute, oldest first"
    assert [r.run_key for r in first.run_requests] == keys
    again = rain_minute_sensor(dg.build_sensor_context(cursor=first.cursor, instance=instance))
    assert isinstance(again, dg.SkipReason), "each minute is requested once"

    for request in first.run_requests:
        result = dg.materialize(
            [*RAIN_ASSETS, *RAIN_CHECKS],
            resources=resources,
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
        )
        assert result.success
        materialization = result.asset_materializations_for_node("rain_forecasts")[0]
        assert materialization.metadata["loaded_from"].value == "processor output"
        evaluations = result.get_asset_check_evaluations()
        blocking = [e for e in evaluations if e.blocking]
        assert blocking and all(e.passed for e in blocking)

    with duckdb.connect(str(load_settings().warehouse_path), read_only=True) as conn:
        per_minute = conn.execute(
            "select window_start, count(*), count(distinct location_id), "
            "count(next_hour_precipitation_mm) "
            "from weather.rolling_precipitation_sum group by 1 order by 1"
        ).fetchall()
    n = len(locations)
    assert [(m.replace(tzinfo=UTC), c, d) for m, c, d, _ in per_minute] == [
        (m, n, n) for m in minutes
    ]
