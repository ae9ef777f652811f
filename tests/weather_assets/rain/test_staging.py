"""The hand-over between rain_forecasts' loading and writing steps, on the local object store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from resources.object_store import ObjectStore, object_store_from
from resources.settings import load_settings
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain import staging
from weather_assets.rain.assets import rain_forecasts

MINUTE = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
WINDOW = (MINUTE, MINUTE + timedelta(minutes=1))


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    return ObjectStore(local_dir=str(tmp_path / "objects"))


def test_what_is_staged_reads_back_with_its_metadata(store):
    frame = pl.DataFrame({"location_id": ["a", "b"], "fetched_minute": [MINUTE, MINUTE]})
    metadata = {"coordinates": 2, "producers": "| a |", "by_reason": {"429": 1}}
    staging.stage(store, "run-1", WINDOW, frame, metadata, markdown=("producers",))

    staged = staging.read_staged(store, "run-1", WINDOW)

    assert staged.forecasts.equals(frame)
    assert staged.metadata == metadata
    assert staged.markdown == ["producers"]


def test_another_run_or_window_is_not_read(store):
    staging.stage(store, "run-1", WINDOW, pl.DataFrame({"a": [1]}), {})
    with pytest.raises(staging.StagedMinutesMissing, match=r"2026-03-01-10:05.*Re-run the whole"):
        staging.read_staged(store, "run-2", WINDOW)
    longer = (MINUTE, MINUTE + timedelta(minutes=3))
    with pytest.raises(staging.StagedMinutesMissing, match="not this run's"):
        staging.read_staged(store, "run-1", longer)


def test_keys_of_a_run_and_expired_day_folders(store):
    old = (MINUTE - timedelta(days=2), MINUTE - timedelta(days=2) + timedelta(minutes=1))
    staging.stage(store, "run-1", WINDOW, pl.DataFrame({"a": [1]}), {})
    staging.stage(store, "run-2", WINDOW, pl.DataFrame({"a": [1]}), {})
    staging.stage(store, "run-3", old, pl.DataFrame({"a": [1]}), {})

    assert [k.rsplit("/", 2)[1] for k in staging.staged_keys_of_run(store, "run-2")] == [
        "run-2",
        "run-2",
    ]
    expired = staging.expired_staging_keys(store, MINUTE - timedelta(days=1))
    assert [k.rsplit("/", 2)[1] for k in expired] == ["run-3", "run-3"]


def rain_forecasts_job() -> dg.JobDefinition:
    """rain_forecasts alone, in process, with the resources the environment says (reconstructable,
    so a re-execution from failure rebuilds it)."""
    from definitions import build_resources

    job = dg.define_asset_job(
        "rain_forecasts_only", selection=[rain_forecasts], executor_def=dg.in_process_executor
    )
    defs = dg.Definitions(
        assets=[rain_forecasts], jobs=[job], resources=build_resources(load_settings())
    )
    return defs.resolve_job_def("rain_forecasts_only")


def test_a_failed_write_is_re_executed_from_the_staged_minutes(platform_env, monkeypatch, instance):
    key = (datetime.now(UTC) - timedelta(minutes=4)).strftime(MINUTE_FORMAT)
    # The warehouse's folder is a file: the write fails; a folder in its place lets it through.
    folder = platform_env / "warehouse"
    folder.write_text("")
    monkeypatch.setenv("WAREHOUSE_PATH", str(folder / "warehouse.duckdb"))
    job = dg.reconstructable(rain_forecasts_job)
    with dg.execute_job(job, instance, tags={"dagster/partition": key}) as first:
        assert not first.success
        assert first.failure_data_for_node("rain_forecasts.write_rain_forecasts") is not None
    store = object_store_from(load_settings())
    staged = staging.staged_keys_of_run(store, first.run_id)
    assert len(staged) == 2, "the failed write keeps what was staged"

    folder.unlink()
    folder.mkdir()
    options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
    with dg.execute_job(
        job, instance, tags={"dagster/partition": key}, reexecution_options=options
    ) as again:
        assert again.success
        steps = {e.step_key for e in again.all_events if e.is_step_start}
    assert steps == {"rain_forecasts.write_rain_forecasts"}, "nothing fetched again"
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute("select count(*) from weather.rain_forecasts").fetchone()[0]
    assert rows > 0
    assert staging.staged_keys_of_run(store, first.run_id) == [], "deleted once written"
