"""run_history_job deletes old minute runs with their event logs and compute logs, keeps failed
ones longer, never touches a run in progress or another job's runs.

Real runs on a real instance (the dagster.yaml ``make run`` writes, SQLite storage: one event
log database per run), made by jobs that carry the purged jobs' names; the clock is moved
forward instead of the runs backdated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from resources import clock
from resources.instance_config import main as write_instance_config
from resources.run_history import Cutoffs
from weather_assets.rain.run_history import run_history_job


def _job(name: str, fail: bool = False) -> dg.JobDefinition:
    @dg.op(name=f"{name}_step")
    def step(context):
        print("minute loaded " * 200)  # compute logs, as a real step writes them
        context.log_event(dg.AssetMaterialization(f"{name}_probe"))
        if fail:
            raise RuntimeError("the minute failed")

    @dg.job(name=name)
    def job() -> None:
        step()

    return job


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def instance(request, tmp_path, monkeypatch):
    """SQLite (``make run``'s default) or PostgreSQL (``DAGSTER_PG_URL``) instance storage."""
    if request.param == "postgresql":
        monkeypatch.setenv("DAGSTER_PG_URL", request.getfixturevalue("postgres_database"))
    else:
        monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    assert write_instance_config([str(tmp_path / "dagster.yaml")]) == 0
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def _run(instance: dg.DagsterInstance, name: str, fail: bool = False) -> str:
    result = _job(name, fail).execute_in_process(instance=instance, raise_on_error=False)
    assert result.success is not fail
    return result.run_id


def _leftovers(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    found = []
    if instance.get_run_by_id(run_id) is not None:
        found.append("run record")
    shard = getattr(instance.event_log_storage, "path_for_shard", None)
    if shard and Path(shard(run_id)).exists():
        found.append("event log file")
    if (Path(instance.root_directory) / "storage" / run_id).exists():
        found.append("compute logs")
    if instance.all_logs(run_id):  # last: reading sets up an empty database file again
        found.append("events")
    return found


def _purge_at(instance, monkeypatch, moment: datetime) -> dict:
    monkeypatch.setattr(clock, "utcnow", lambda: moment)
    result = run_history_job.execute_in_process(instance=instance)
    assert result.success
    return _metadata(result)


def _metadata(result) -> dict:
    (output,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def test_old_minute_runs_go_with_their_logs_failed_ones_later_others_never(
    instance, monkeypatch
) -> None:
    done = [_run(instance, "rain_minute_job") for _ in range(3)]
    station = _run(instance, "station_poll_job")
    failed = _run(instance, "rain_minute_job", fail=True)
    other = _run(instance, "temperature_hourly_job")
    started = create_run_for_test(
        instance, job_name="rain_minute_job", status=dg.DagsterRunStatus.STARTED
    ).run_id
    sqlite = hasattr(instance.event_log_storage, "path_for_shard")
    assert _leftovers(instance, done[0]) == [
        "run record", *(["event log file"] if sqlite else []), "compute logs", "events",
    ]  # fmt: skip
    now = datetime.now(UTC)

    # Within the retention (48 h by default): nothing goes.
    assert _purge_at(instance, monkeypatch, now + timedelta(hours=47))["runs_deleted"] == 0
    assert _leftovers(instance, done[0])

    # Past it: the successful minute runs, with every trace, and the purge's own first run;
    # the failed one stays.
    metadata = _purge_at(instance, monkeypatch, now + timedelta(hours=49))
    assert metadata["runs_deleted_by_job"] == {
        "rain_minute_job": 3, "station_poll_job": 1, "run_history_job": 1,
    }  # fmt: skip
    assert metadata["event_log_files_deleted"] == (5 if sqlite else 0)
    assert metadata["mb_freed"] > 0
    for run_id in [*done, station]:
        assert _leftovers(instance, run_id) == [], run_id
    assert instance.get_run_by_id(failed) is not None

    # Past the failed-run retention (14 days): the failed run too; never the run in progress,
    # never another job's run or materializations.
    metadata = _purge_at(instance, monkeypatch, now + timedelta(days=15))
    assert metadata["runs_deleted_by_job"] == {"rain_minute_job": 1, "run_history_job": 1}
    assert _leftovers(instance, failed) == []
    assert instance.get_run_by_id(started).status == dg.DagsterRunStatus.STARTED
    assert _leftovers(instance, other)
    assert instance.get_latest_materialization_event(dg.AssetKey("temperature_hourly_job_probe"))


def test_a_retention_below_one_hour_or_day_is_refused() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match=r"at least 1 hour .* got 0 h"):
        Cutoffs.from_retention(now, 0, 14)
    with pytest.raises(ValueError, match="failed-run retention at least 1 day"):
        Cutoffs.from_retention(now, 48, -1)


def test_every_purged_job_is_one_of_the_platforms() -> None:
    """Purged by name: a renamed job would silently keep its runs for ever."""
    from definitions import defs
    from weather_assets.rain.run_history import PURGED_JOBS

    for name in PURGED_JOBS:
        assert defs.resolve_job_def(name).name == name
