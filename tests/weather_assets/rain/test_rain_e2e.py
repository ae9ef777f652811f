"""End to end: materialize the rain assets in-process, simulated source, temp warehouse."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from resources.object_store import ObjectStore
from resources.settings import load_settings
from resources.source import SourceConfig
from weather_assets.locations import load_locations
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.client import OpenWeatherMapResource

N_LOCATIONS = len(load_locations(load_settings().locations_file))


def recent_minute(minutes_ago: int = 5) -> str:
    moment = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return moment.strftime(MINUTE_FORMAT)


def materialize(resources, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS], resources=resources, instance=instance, **kwargs
    )


def warehouse(resources) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(resources["warehouse"].database, read_only=True)


def counts(resources) -> tuple[int, int]:
    with warehouse(resources) as conn:
        return (
            conn.execute("select count(*) from weather.rain_forecasts").fetchone()[0],
            conn.execute("select count(*) from weather.rolling_precipitation_sum").fetchone()[0],
        )


def test_one_minute_end_to_end(platform_resources, instance):
    key = recent_minute()
    result = materialize(platform_resources, instance, partition_key=key)
    assert result.success

    with warehouse(platform_resources) as conn:
        totals = conn.execute(
            "select location_id, next_hour_precipitation_mm, minutes_covered, window_start "
            "from weather.rolling_precipitation_sum"
        ).fetchall()
        per_location = conn.execute(
            "select location_id, count(*), count(forecast_at), min(forecast_at), max(forecast_at)"
            " from weather.rain_forecasts group by 1"
        ).fetchall()
    assert len(totals) == N_LOCATIONS
    minute = datetime.strptime(key, MINUTE_FORMAT)
    assert {t[3] for t in totals} == {minute}
    for location_id, rows, with_forecast, first, last in per_location:
        # 61 minutely entries, or a single null marker row where there is no nowcast.
        assert (rows, with_forecast) in {(61, 61), (1, 0)}, location_id
        if with_forecast:  # as the real API answers: from the minute after the call's
            assert (first, last) == (
                minute + timedelta(minutes=1),
                minute + timedelta(minutes=61),
            ), location_id
    covered = {t[0]: t[2] for t in totals}
    assert all(m in (0, 60) for m in covered.values())
    assert sum(1 for m in covered.values() if m == 60) >= 0.9 * N_LOCATIONS

    forecast_meta = result.asset_materializations_for_node("rain_forecasts")[0].metadata
    assert forecast_meta["source"].value == "simulated"
    assert forecast_meta["coordinates"].value == N_LOCATIONS
    totals_meta = result.asset_materializations_for_node("rolling_precipitation_sum")[0].metadata
    assert "office_next_hour_mm" in totals_meta
    assert "| location |" in totals_meta["wettest"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["rain_forecasts_unique_per_minute"]
    assert checks["rain_forecasts_rates_non_negative"]
    assert checks["rolling_precipitation_sum_one_row_per_coordinate"]


def test_rerunning_a_partition_keeps_one_copy(platform_resources, instance):
    key = recent_minute(7)
    materialize(platform_resources, instance, partition_key=key)
    first = counts(platform_resources)
    with warehouse(platform_resources) as conn:
        before = conn.execute(
            "select * from weather.rolling_precipitation_sum order by location_id"
        ).fetchall()
    for _ in range(2):
        materialize(platform_resources, instance, partition_key=key)
    assert counts(platform_resources) == first
    with warehouse(platform_resources) as conn:
        after = conn.execute(
            "select * from weather.rolling_precipitation_sum order by location_id"
        ).fetchall()
    assert after == before, "the simulator is deterministic per minute: same partition, same data"


def test_a_range_runs_as_one_run_and_each_minute_is_summed(platform_resources, instance):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=12)
    keys = [(start + timedelta(minutes=i)).strftime(MINUTE_FORMAT) for i in range(3)]
    result = materialize(
        platform_resources,
        instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert result.success
    with warehouse(platform_resources) as conn:
        per_minute = conn.execute(
            "select window_start, count(*) from weather.rolling_precipitation_sum group by 1"
        ).fetchall()
    assert sorted(n for _, n in per_minute) == [N_LOCATIONS] * 3


def test_raw_payloads_are_archived_locally(platform_resources, instance):
    key = recent_minute(3)
    materialize(platform_resources, instance, partition_key=key)
    store: ObjectStore = platform_resources["object_store"]
    minute = datetime.strptime(key, MINUTE_FORMAT)
    keys = store.list_keys(store.key("raw/openweathermap/onecall"))
    assert keys == [
        store.key("raw/openweathermap/onecall", f"{minute:%Y-%m-%d}", f"{minute:%H-%M}.jsonl.gz")
    ]


def test_live_mode_refuses_a_stale_minute(platform_resources, instance):
    resources = dict(platform_resources)
    resources["openweathermap"] = OpenWeatherMapResource(
        source=SourceConfig(mode="live"), api_key="not-used"
    )
    result = dg.materialize(
        RAIN_ASSETS[:1],
        resources=resources,
        instance=instance,
        partition_key=recent_minute(10),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("rain_forecasts").error.message
    # 10 minutes when the key was made; 11 if the run starts after the next minute boundary.
    assert re.search(r"\b1[01] minutes old", failure) and "live mode cannot fetch it" in failure


def test_live_mode_without_a_key_names_the_variable(platform_env, monkeypatch, instance):
    monkeypatch.setenv("SOURCE_MODE", "live")
    from definitions import build_resources

    resources = build_resources(load_settings())
    with pytest.raises(Exception, match="OPENWEATHERMAP_API_KEY"):
        dg.materialize(
            RAIN_ASSETS[:1], resources=resources, instance=instance, partition_key=recent_minute(0)
        )


@pytest.mark.integration
def test_s3_object_store_over_http(platform_resources, instance, moto_server, s3_bucket):
    import boto3

    resources = dict(platform_resources)
    resources["object_store"] = ObjectStore(
        bucket=s3_bucket, prefix="team/platform", endpoint_url=moto_server
    )
    key = recent_minute(4)
    result = materialize(resources, instance, partition_key=key)
    assert result.success
    listed = boto3.client("s3", endpoint_url=moto_server).list_objects_v2(Bucket=s3_bucket)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    minute = datetime.strptime(key, MINUTE_FORMAT)
    assert keys == [
        f"team/platform/raw/openweathermap/onecall/{minute:%Y-%m-%d}/{minute:%H-%M}.jsonl.gz"
    ]
    meta = result.asset_materializations_for_node("rain_forecasts")[0].metadata
    assert meta["raw_payloads"].value == f"s3://{s3_bucket}/{keys[0]}"
