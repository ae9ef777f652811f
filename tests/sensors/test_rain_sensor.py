"""The minute sensor evaluated through Dagster's own sensor context."""

from datetime import UTC, datetime

import dagster as dg

from resources import clock
from sensors.rain import rain_minute_sensor


def evaluate(monkeypatch, now: datetime, cursor: str | None, instance):
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    context = dg.build_sensor_context(cursor=cursor, instance=instance)
    return rain_minute_sensor(context), context


def test_requests_the_current_minute_with_it_as_run_key(monkeypatch, instance):
    result, context = evaluate(
        monkeypatch, datetime(2026, 11, 22, 16, 5, 59, tzinfo=UTC), None, instance
    )
    assert isinstance(result, dg.RunRequest)
    # Queued ahead of backfill runs: a live minute is only fetchable while it is current.
    assert result.tags["dagster/priority"] == "10"
    assert result.run_key == result.partition_key == "2026-11-22-16:05"
    assert context.cursor == "2026-11-22-16:05"


def test_a_second_tick_in_the_same_minute_is_skipped(monkeypatch, instance):
    now = datetime(2026, 11, 22, 16, 5, 30, tzinfo=UTC)
    result, _ = evaluate(monkeypatch, now, "2026-11-22-16:05", instance)
    assert isinstance(result, dg.SkipReason)


def test_resumes_at_the_current_minute_after_downtime(monkeypatch, instance):
    now = datetime(2026, 11, 22, 18, 0, 2, tzinfo=UTC)
    result, context = evaluate(monkeypatch, now, "2026-11-22-16:05", instance)
    assert result.partition_key == "2026-11-22-18:00"
    assert context.cursor == "2026-11-22-18:00"


def test_the_sensor_is_on_by_default_and_targets_the_minute_job():
    assert rain_minute_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert rain_minute_sensor.job_name == "rain_minute_job"
