"""The retention job deletes only what is past its retention: rows, payload objects, and the
stream processor's minute files and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from resources.object_store import ObjectStore
from resources.warehouse import DUCKDB_POOL
from tests.hardening.bad_input_helpers import failure_text
from tests.hardening.network_audit import connects_during, socket_connects, step_intervals
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain import staging
from weather_assets.rain.assets import RAIN_ASSETS, rolling_precipitation_sum
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.jobs import rain_retention_job
from weather_assets.rain.retention import delete_before
from weather_assets.rain.stream import minute_store
from weather_assets.rain.stream.messages import parse_messages, raw_frame


def processor_files(store, minute: datetime) -> None:
    """A processed minute and a dead letter, as the stream processor writes them."""
    naive = minute.replace(tzinfo=None)
    message = (
        b'{"v":1,"kind":"end","minute":%d,"shard":0,"shards":1,"count":0,"producer":"p"}'
        % int(minute.replace(second=0, microsecond=0).timestamp())
    )
    parsed = parse_messages(
        raw_frame([(1, "rain.nowcast.x.end.0", message, naive), (2, "x", b"not json", naive)])
    )
    minute_store.write_batch(store, int(minute.timestamp()), parsed)


def test_old_raw_rows_and_payloads_go_recent_ones_stay(platform_resources, instance):
    now = datetime.now(UTC)
    old = (now - timedelta(days=3)).strftime(MINUTE_FORMAT)
    recent = (now - timedelta(minutes=5)).strftime(MINUTE_FORMAT)
    for key in (old, recent):
        assert materialize_minute(platform_resources, instance, key)
    store = platform_resources["object_store"]
    assert len(store.list_keys(store.key("raw/openweathermap/onecall"))) == 2
    processor_files(store, now - timedelta(days=3))
    processor_files(store, now - timedelta(minutes=5))
    stream_files = store.list_keys(store.key(minute_store.STREAM_PREFIX))
    assert len(stream_files) == 4
    # What failed runs left staged between their loading and writing steps.
    assert store.list_keys(store.key(staging.STAGING_PREFIX)) == [], "written runs leave none"
    for minute, run_id in ((now - timedelta(days=3), "old-run"), (now, "recent-run")):
        window = (minute, minute + timedelta(minutes=1))
        staging.stage(store, run_id, window, pl.DataFrame({"a": [1]}), {})

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
    kept = store.list_keys(store.key(minute_store.STREAM_PREFIX))
    assert sorted(kept) == sorted(k for k in stream_files if recent[:10] in k)
    assert len(kept) == 2, "the recent minute file and its dead letters stay"
    assert [k.split("/")[-2] for k in store.list_keys(store.key(staging.STAGING_PREFIX))] == [
        "recent-run",
        "recent-run",
    ]


def run_retention(resources, instance, **config) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(jobs=[rain_retention_job], resources=resources).resolve_job_def(
        "rain_retention_job"
    )
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {"compact_rain_history": {"config": config}}},
        raise_on_error=False,
    )


def table_counts(resources) -> tuple[int, int]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        return (
            conn.execute("select count(*) from weather.rain_forecasts").fetchone()[0],
            conn.execute("select count(*) from weather.rolling_precipitation_sum").fetchone()[0],
        )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"raw_retention_hours": -1}, "raw_retention_hours"),
        ({"raw_retention_hours": 0}, "raw_retention_hours"),
        ({"totals_retention_days": 0}, "totals_retention_days"),
    ],
)
def test_a_retention_below_one_fails_and_deletes_nothing(
    platform_resources, instance, config, field
):
    key = (datetime.now(UTC) - timedelta(minutes=5)).strftime(MINUTE_FORMAT)
    assert materialize_minute(platform_resources, instance, key)
    before = table_counts(platform_resources)
    store = platform_resources["object_store"]
    payloads = store.list_keys(store.key("raw/openweathermap/onecall"))

    result = run_retention(platform_resources, instance, **config)

    assert not result.success
    failure = failure_text(result, "compact_rain_history")
    assert field in failure and "at least 1" in failure, failure
    assert table_counts(platform_resources) == before
    assert store.list_keys(store.key("raw/openweathermap/onecall")) == payloads


@pytest.mark.parametrize("minutes_ago", [0, 30, -60])
def test_the_delete_itself_refuses_a_cutoff_later_than_an_hour_ago(minutes_ago):
    conn = duckdb.connect()
    conn.execute("create schema weather")
    conn.execute("create table weather.rain_forecasts (fetched_minute timestamp)")
    conn.execute("insert into weather.rain_forecasts values (now()::timestamp)")
    cutoff = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    with pytest.raises(ValueError, match="later than one hour ago"):
        delete_before(conn, "rain_forecasts", "fetched_minute", cutoff)
    assert conn.execute("select count(*) from weather.rain_forecasts").fetchone()[0] == 1
    # An hour and a minute ago is allowed (and deletes nothing newer).
    assert delete_before(conn, "rain_forecasts", "fetched_minute", cutoff - timedelta(hours=2)) == 0


def totals_rows(resources) -> list[tuple]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        return conn.execute(
            "select * from weather.rolling_precipitation_sum order by window_start, location_id"
        ).fetchall()


def materialize_minute(resources, instance, key: str) -> bool:
    """One minute through the whole rain graph (assets and checks); True when it succeeded."""
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS], resources=resources, instance=instance, partition_key=key
    ).success


def rerun_totals(resources, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS],
        selection=[rolling_precipitation_sum],
        resources=resources,
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def test_rerunning_totals_after_retention_fails_and_keeps_them(platform_resources, instance):
    key = (datetime.now(UTC) - timedelta(hours=3)).strftime(MINUTE_FORMAT)
    assert materialize_minute(platform_resources, instance, key)
    totals = totals_rows(platform_resources)
    assert totals
    assert run_retention(platform_resources, instance, raw_retention_hours=1).success
    assert table_counts(platform_resources)[0] == 0, "retention removed the minute's raw rows"

    result = rerun_totals(platform_resources, instance, partition_key=key)

    assert not result.success
    failure = failure_text(result, "rolling_precipitation_sum")
    assert key in failure and "retention" in failure and "kept" in failure, failure
    assert totals_rows(platform_resources) == totals


def test_a_range_with_one_minute_gone_keeps_every_total(platform_resources, instance):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    keys = [(start + timedelta(minutes=i)).strftime(MINUTE_FORMAT) for i in range(2)]
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    assert dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS], resources=platform_resources, instance=instance, tags=tags
    ).success
    totals = totals_rows(platform_resources)
    with duckdb.connect(platform_resources["warehouse"].database) as conn:
        conn.execute(
            "delete from weather.rain_forecasts where fetched_minute = ?",
            [start.replace(tzinfo=None)],
        )

    result = rerun_totals(platform_resources, instance, tags=tags)

    assert not result.success
    failure = failure_text(result, "rolling_precipitation_sum")
    assert keys[0] in failure and keys[1] not in failure, failure
    assert totals_rows(platform_resources) == totals


@pytest.mark.integration
def test_object_deletes_run_outside_the_duckdb_pool(
    platform_resources, instance, moto_server, s3_bucket
):
    resources = dict(platform_resources)
    store = ObjectStore(bucket=s3_bucket, prefix="team", endpoint_url=moto_server)
    resources["object_store"] = store
    old = store.key("raw/openweathermap/onecall", "2020-01-01", "00-00.jsonl.gz")
    store.put_bytes(old, b"expired")

    with socket_connects() as connects:
        result = run_retention(resources, instance, raw_retention_hours=48)

    assert result.success
    assert store.list_keys(store.key("raw/")) == [], "the expired payload went"
    steps = step_intervals(instance, result.run_id)
    pooled = [step for step, (pool, _, _) in steps.items() if pool == DUCKDB_POOL]
    assert pooled, "the warehouse deletes hold the pool"
    assert connects, "S3 was reached: the test can see a connection"
    assert {s: connects_during(steps, connects, s) for s in pooled} == {s: [] for s in pooled}
