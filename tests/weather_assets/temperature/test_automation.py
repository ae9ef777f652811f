"""When the nightly ETL and the temperature forecast run: their automation conditions, evaluated
tick by tick against a real Dagster instance (``dg.evaluate_automation_conditions``), with
materializations recorded in that instance to move time and state forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from weather_assets.observations.assets import OBSERVATION_ASSETS
from weather_assets.temperature.assets import TEMPERATURE_ASSETS

ASSETS = [*OBSERVATION_ASSETS, *TEMPERATURE_ASSETS]
ETL = [a.key.to_user_string() for a in OBSERVATION_ASSETS]
HOURLY_CHAIN = ["temperature_actuals", "temperature_predictions", "temperature_accuracy"]


class Ticks:
    """Successive evaluations of the automation sensor against one instance (one cursor)."""

    def __init__(self, instance: dg.DagsterInstance, resources: dict):
        self.instance = instance
        self.defs = dg.Definitions(assets=ASSETS, resources=resources)
        self.cursor = None

    def __call__(self, at: datetime) -> dict[str, set[str | None]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, evaluation_time=at, cursor=self.cursor
        )
        self.cursor = result.cursor
        requested = {a.key.to_user_string(): result.get_requested_partitions(a.key) for a in ASSETS}
        return {name: keys for name, keys in requested.items() if keys}


def materialize(instance: dg.DagsterInstance, names: list[str], *partitions: str | None) -> None:
    for name in names:
        for partition in partitions or (None,):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=name, partition=partition)
            )


def days(last: datetime, n: int) -> list[str]:
    return [f"{last - timedelta(days=i):%Y-%m-%d}" for i in range(n)][::-1]


def hours(last: datetime, n: int) -> list[str]:
    return [f"{last - timedelta(hours=i):%Y-%m-%d-%H:00}" for i in range(n)][::-1]


@pytest.fixture
def ticks(instance, platform_resources) -> Ticks:
    return Ticks(instance, platform_resources)


def test_fresh_instance_bootstraps_the_forecast_in_dependency_order(instance, ticks):
    """Six days through the ETL and 25 hours of actuals at once; the model once the ETL has
    produced yesterday; the first prediction once the model exists; the first score the hour
    after (before, there is no prediction to score, nor a predictions table to read)."""
    now = datetime(2026, 11, 22, 14, 5, tzinfo=UTC)
    last_hour = datetime(2026, 11, 22, 13, tzinfo=UTC)
    requested = ticks(now)
    for name in ETL:
        assert requested[name] == set(days(datetime(2026, 11, 21), 6)), name
    assert requested["temperature_actuals"] == set(hours(last_hour, 25))
    assert "temperature_accuracy" not in requested, "no prediction to score yet"
    assert "temperature_model" not in requested, "no hourly observations to train on yet"
    assert "temperature_predictions" not in requested, "no model yet"

    materialize(instance, ETL, *days(datetime(2026, 11, 21), 6))
    materialize(instance, ["temperature_actuals"], *hours(last_hour, 25))
    assert ticks(now + timedelta(minutes=3)) == {"temperature_model": {None}}
    assert ticks(now + timedelta(minutes=4)) == {}, "requested once, not on the next tick"

    materialize(instance, ["temperature_model"])
    assert ticks(now + timedelta(minutes=6)) == {"temperature_predictions": {"2026-11-22-13:00"}}
    materialize(instance, ["temperature_predictions"], "2026-11-22-13:00")
    assert ticks(now + timedelta(minutes=7)) == {}
    assert ticks(now + timedelta(minutes=8)) == {}
    # The next hour, after its grace: actual, prediction and the first score in one request.
    hour = {"2026-11-22-14:00"}
    assert ticks(datetime(2026, 11, 22, 15, 2, 30, tzinfo=UTC)) == dict.fromkeys(HOURLY_CHAIN, hour)


def test_an_instance_with_history_requests_nothing(instance, ticks):
    now = datetime(2026, 11, 22, 14, 5, tzinfo=UTC)
    materialize(instance, ETL, *days(datetime(2026, 11, 21), 6))
    materialize(instance, ["temperature_model"])
    materialize(instance, HOURLY_CHAIN, *hours(datetime(2026, 11, 22, 13, tzinfo=UTC), 25))
    assert ticks(now) == {}
    assert ticks(now + timedelta(minutes=1)) == {}


def test_retraining_waits_for_yesterday_then_runs_once_a_day(instance, ticks):
    materialize(instance, ETL, *days(datetime(2026, 11, 21), 6))
    materialize(instance, ["temperature_model"])
    materialize(instance, HOURLY_CHAIN, *hours(datetime(2026, 11, 22, 22, tzinfo=UTC), 25))
    asked = lambda at: ticks(at).get("temperature_model")  # noqa: E731

    assert asked(datetime(2026, 11, 22, 23, 59, 30, tzinfo=UTC)) is None
    # After midnight yesterday (the 22nd) has no ETL output yet: no retraining on old data.
    assert asked(datetime(2026, 11, 23, 0, 0, 30, tzinfo=UTC)) is None
    assert asked(datetime(2026, 11, 23, 0, 24, tzinfo=UTC)) is None

    materialize(instance, ETL, "2026-11-22")
    assert asked(datetime(2026, 11, 23, 0, 25, tzinfo=UTC)) == {None}
    assert asked(datetime(2026, 11, 23, 0, 25, 30, tzinfo=UTC)) is None
    materialize(instance, ["temperature_model"])
    assert asked(datetime(2026, 11, 23, 0, 30, tzinfo=UTC)) is None
    # Yesterday's ETL re-run by hand later that day: the model is not retrained a second time.
    materialize(instance, ETL, "2026-11-22")
    assert asked(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) is None
    assert asked(datetime(2026, 11, 23, 23, 59, tzinfo=UTC)) is None

    # The next night: again only once the 23rd is through the ETL.
    assert asked(datetime(2026, 11, 24, 0, 0, 30, tzinfo=UTC)) is None
    materialize(instance, ETL, "2026-11-23")
    assert asked(datetime(2026, 11, 24, 0, 31, tzinfo=UTC)) == {None}


def test_the_nightly_etl_runs_yesterday_once_after_0020(instance, ticks):
    materialize(instance, ETL, *days(datetime(2026, 11, 21), 6))
    materialize(instance, ["temperature_model"])
    materialize(instance, HOURLY_CHAIN, *hours(datetime(2026, 11, 22, 22, tzinfo=UTC), 25))
    etl = lambda at: {k: v for k, v in ticks(at).items() if k in ETL}  # noqa: E731

    assert etl(datetime(2026, 11, 22, 23, 59, 30, tzinfo=UTC)) == {}
    # 00:00-00:20 is the grace for the last minute's polls and late rows.
    assert etl(datetime(2026, 11, 23, 0, 0, 30, tzinfo=UTC)) == {}
    assert etl(datetime(2026, 11, 23, 0, 19, 30, tzinfo=UTC)) == {}
    assert etl(datetime(2026, 11, 23, 0, 20, 30, tzinfo=UTC)) == {n: {"2026-11-22"} for n in ETL}
    assert etl(datetime(2026, 11, 23, 0, 21, tzinfo=UTC)) == {}
    materialize(instance, ETL, "2026-11-22")
    assert etl(datetime(2026, 11, 23, 0, 22, tzinfo=UTC)) == {}


def test_the_hour_runs_after_its_two_minute_grace_as_one_request(instance, ticks):
    materialize(instance, ETL, *days(datetime(2026, 11, 22), 6))
    materialize(instance, ["temperature_model"])
    materialize(instance, HOURLY_CHAIN, *hours(datetime(2026, 11, 23, 13, tzinfo=UTC), 25))

    assert ticks(datetime(2026, 11, 23, 14, 59, 30, tzinfo=UTC)) == {}
    assert ticks(datetime(2026, 11, 23, 15, 0, 30, tzinfo=UTC)) == {}
    assert ticks(datetime(2026, 11, 23, 15, 1, 30, tzinfo=UTC)) == {}
    hour = {"2026-11-23-14:00"}
    assert ticks(datetime(2026, 11, 23, 15, 2, 30, tzinfo=UTC)) == dict.fromkeys(HOURLY_CHAIN, hour)
    assert ticks(datetime(2026, 11, 23, 15, 3, tzinfo=UTC)) == {}
    materialize(instance, HOURLY_CHAIN, "2026-11-23-14:00")
    assert ticks(datetime(2026, 11, 23, 15, 4, tzinfo=UTC)) == {}


def test_a_failed_run_is_not_retried_in_a_loop(instance, ticks):
    """As with a sensor's run key: a failure waits for a person (or the next night)."""

    @dg.asset(name="weather_observations_raw", partitions_def=OBSERVATION_ASSETS[0].partitions_def)
    def failing_raw():
        raise RuntimeError("the station feed is down")

    materialize(instance, ETL, *days(datetime(2026, 11, 20), 6))
    materialize(instance, ["temperature_model"])
    materialize(instance, HOURLY_CHAIN, *hours(datetime(2026, 11, 22, 13, tzinfo=UTC), 25))
    result = dg.materialize(
        [failing_raw], instance=instance, partition_key="2026-11-21", raise_on_error=False
    )
    assert not result.success
    now = datetime(2026, 11, 22, 14, 5, tzinfo=UTC)
    requested = ticks(now)
    assert "weather_observations_raw" not in requested
    assert requested["weather_observations_clean"] == {"2026-11-21"}
    assert ticks(now + timedelta(minutes=5)).get("weather_observations_raw") is None
