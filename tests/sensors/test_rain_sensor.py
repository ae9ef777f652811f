"""The minute sensor evaluated through Dagster's own sensor context, against a real log.

The decision itself is tested pure (``test_minute_plan``); the downtime catch-up end to end in
``tests/weather_assets/rain/test_rain_stream_e2e.py``.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import dagster as dg

from resources.jetstream import jetstream
from resources.settings import load_settings
from sensors.rain import rain_minute_sensor
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.stream.log import MINUTES, LogConfig, ensure_log, minute_kv_key
from weather_assets.rain.stream.progress import MinuteProgress


def minute_ago(minutes: int) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes)


def with_log(url: str, work):
    async def main():
        async with jetstream(url) as (_, js):
            return await work(js)

    return asyncio.run(main())


def put_progress(url: str, progress: list[MinuteProgress]) -> None:
    async def work(js):
        await ensure_log(js, LogConfig.from_settings(load_settings()))
        bucket = await js.key_value(MINUTES)
        for item in progress:
            await bucket.put(minute_kv_key(item.minute), item.to_json())

    with_log(url, work)


def test_first_start_requests_the_newest_minutes_not_the_logs_history(
    platform_env, nats_server, instance
):
    old, recent = minute_ago(45), minute_ago(4)
    put_progress(nats_server.url, [MinuteProgress(m, 1, frozenset({0})) for m in (old, recent)])
    result = rain_minute_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    key = recent.strftime(MINUTE_FORMAT)
    assert [r.run_key for r in result.run_requests] == [key]
    request = result.run_requests[0]
    assert request.partition_key == key
    # Queued ahead of backfill runs: the newest minutes are what users look at.
    assert request.tags["dagster/priority"] == "10"
    assert request.tags["rain/completeness"] == "complete"
    assert result.cursor == key


def test_a_minute_past_its_grace_period_is_requested_with_its_missing_shards(
    platform_env, nats_server, instance
):
    minute = minute_ago(5)  # 90 s grace: long passed
    put_progress(nats_server.url, [MinuteProgress(minute, 3, frozenset({0, 2}))])
    cursor = (minute - timedelta(minutes=1)).strftime(MINUTE_FORMAT)
    result = rain_minute_sensor(dg.build_sensor_context(cursor=cursor, instance=instance))
    (request,) = result.run_requests
    assert request.tags["rain/completeness"] == "grace period passed (shards 1 missing)"
    assert request.tags["rain/missing_shards"] == "1"


def test_a_log_never_set_up_is_a_clear_skip(platform_env, nats_server, instance):
    result = rain_minute_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason)
    assert "no rain_minutes bucket yet" in result.skip_message


def test_the_sensor_is_on_by_default_and_targets_the_minute_job():
    assert rain_minute_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert rain_minute_sensor.job_name == "rain_minute_job"
