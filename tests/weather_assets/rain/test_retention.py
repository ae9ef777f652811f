"""The retention job deletes only what is past its retention, rows and payload objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb

from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.jobs import rain_retention_job


def test_old_raw_rows_and_payloads_go_recent_ones_stay(platform_resources, instance):
    now = datetime.now(UTC)
    old = (now - timedelta(days=3)).strftime(MINUTE_FORMAT)
    recent = (now - timedelta(minutes=5)).strftime(MINUTE_FORMAT)
    for key in (old, recent):
        assert dg.materialize(
            [*RAIN_ASSETS, *RAIN_CHECKS],
            resources=platform_resources,
            instance=instance,
            partition_key=key,
        ).success
    store = platform_resources["object_store"]
    assert len(store.list_keys(store.key("raw/openweathermap/onecall"))) == 2

    job = dg.Definitions(jobs=[rain_retention_job], resources=platform_resources).resolve_job_def(
        "rain_retention_job"
    )
    result = job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "compact_rain_history": {
                    "config": {"raw_retention_hours": 48, "totals_retention_days": 30}
                }
            }
        },
    )
    assert result.success

    with duckdb.connect(platform_resources["warehouse"].database, read_only=True) as conn:
        raw_minutes = conn.execute(
            "select distinct fetched_minute from weather.rain_forecasts"
        ).fetchall()
        total_minutes = conn.execute(
            "select count(distinct window_start) from weather.rolling_precipitation_sum"
        ).fetchone()[0]
    assert [m[0].strftime(MINUTE_FORMAT) for m in raw_minutes] == [recent]
    assert total_minutes == 2, "totals are kept for the whole partition window"
    remaining = store.list_keys(store.key("raw/openweathermap/onecall"))
    assert len(remaining) == 1 and recent[:10] in remaining[0]
