"""ESIOS stays current: the month in progress is refreshed once a day after the daily tick
(the forecast is day-ahead), the SQL load with it, and the CSV once the refresh has landed;
older months are never requested by the automation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import dagster as dg
import duckdb
import pytest

from esios_assets.assets import (
    ESIOS_ASSETS,
    demand_forecast_esios,
    esios_demand_forecast,
    esios_demand_forecast_csv,
)
from esios_assets.automation import DAILY_REFRESH_CRON, REFRESH_TIMEZONE
from esios_assets.checks import ESIOS_CHECKS
from esios_assets.client import EsiosResource
from esios_assets.partitions import MONTHLY
from esios_assets.sql_setup import create_demand_forecast_table
from esios_assets.transform import MADRID
from resources.sql import SqlDatabase

KEYS = (esios_demand_forecast.key, demand_forecast_esios.key, esios_demand_forecast_csv.key)


def next_tick(after: datetime) -> datetime:
    """The daily refresh tick (20:00 Europe/Madrid) after ``after``."""
    assert (DAILY_REFRESH_CRON, REFRESH_TIMEZONE) == ("0 20 * * *", "Europe/Madrid")
    local = after.astimezone(MADRID)
    tick = local.replace(hour=20, minute=0, second=0, microsecond=0)
    if tick <= local:
        tick = (local + timedelta(days=1)).replace(hour=20, minute=0, second=0, microsecond=0)
    return tick.astimezone(UTC)


class Evaluator:
    """Successive ticks of the automation sensor, as the daemon runs them."""

    def __init__(self, instance, resources):
        self.instance = instance
        self.defs = dg.Definitions(
            assets=ESIOS_ASSETS, asset_checks=ESIOS_CHECKS, resources=resources
        )
        self.cursor = None

    def __call__(self, at: datetime) -> dict[dg.AssetKey, set]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, evaluation_time=at, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {key: set(result.get_requested_partitions(key)) for key in KEYS}


@pytest.fixture
def resources(platform_resources, platform_env):
    database = SqlDatabase(url=f"sqlite:///{platform_env / 'esios.sqlite'}")
    create_demand_forecast_table(database.engine())
    return {**platform_resources, "sql_database": database}


def test_the_month_in_progress_is_refreshed_daily_and_the_csv_follows(resources, instance):
    tick = next_tick(datetime.now(UTC))
    # The month in progress is a partition (its hours up to tomorrow are published).
    current = MONTHLY.get_partition_keys(current_time=tick)[-1]
    assert current == f"{tick.astimezone(MADRID):%Y-%m}-01"
    evaluate = Evaluator(instance, resources)

    nothing = {key: set() for key in KEYS}
    assert evaluate(tick - timedelta(minutes=30)) == nothing  # before the tick
    refresh = {
        esios_demand_forecast.key: {current},
        demand_forecast_esios.key: {current},  # in the same run: the blocking checks gate it
        esios_demand_forecast_csv.key: set(),  # not before the refresh has landed
    }
    assert evaluate(tick + timedelta(minutes=1)) == refresh
    assert evaluate(tick + timedelta(hours=1)) == nothing  # not again the same day

    # The requested run, and an old month backfilled by hand: the CSV follows both, once.
    for month in (current, "2017-01-01"):
        assert dg.materialize(
            [*ESIOS_ASSETS, *ESIOS_CHECKS],
            selection=dg.AssetSelection.assets(esios_demand_forecast, demand_forecast_esios)
            | dg.AssetSelection.checks_for_assets(esios_demand_forecast, demand_forecast_esios),
            resources=resources,
            instance=instance,
            partition_key=month,
        ).success
    assert evaluate(tick + timedelta(hours=2)) == {**nothing, esios_demand_forecast_csv.key: {None}}
    assert evaluate(tick + timedelta(hours=3)) == nothing

    # The next day's tick refreshes the month in progress again, and only it.
    assert evaluate(tick + timedelta(days=1, minutes=1)) == refresh
    assert evaluate(tick + timedelta(days=1, hours=1)) == nothing


def test_the_csv_waits_while_a_blocking_check_fails(resources, instance):
    tick = next_tick(datetime.now(UTC))
    current = MONTHLY.get_partition_keys(current_time=tick)[-1]
    evaluate = Evaluator(instance, resources)
    evaluate(tick + timedelta(minutes=1))
    assert dg.materialize(
        [*ESIOS_ASSETS, *ESIOS_CHECKS],
        selection=dg.AssetSelection.assets(esios_demand_forecast),
        resources=resources,
        instance=instance,
        partition_key=current,
    ).success
    # A lost hour: the month's completeness check fails on the stored data.
    with duckdb.connect(resources["warehouse"].database) as conn:
        conn.execute(
            "delete from esios.esios_demand_forecast where datetime_utc = "
            "(select min(datetime_utc) from esios.esios_demand_forecast)"
        )
    checks = dg.materialize(
        [*ESIOS_ASSETS, *ESIOS_CHECKS],
        selection=dg.AssetSelection.checks_for_assets(esios_demand_forecast),
        resources=resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": current,
            "dagster/asset_partition_range_end": current,
        },
        raise_on_error=False,
    )
    assert not checks.success
    assert evaluate(tick + timedelta(hours=1))[esios_demand_forecast_csv.key] == set()


class EsiosPublishedSoFar(EsiosResource):
    """ESIOS as it answers for the month in progress: the hours up to the end of tomorrow
    (Spanish time), optionally without one of today's hours."""

    lose_an_hour_today: bool = False

    def fetch_month(self, month_start):
        payload = super().fetch_month(month_start)
        today = datetime.now(MADRID).date()
        end = datetime.combine(today + timedelta(days=2), time(), tzinfo=MADRID)
        lost = datetime.combine(today, time(hour=12), tzinfo=MADRID)
        payload["indicator"]["values"] = [
            v
            for v in payload["indicator"]["values"]
            if datetime.fromisoformat(v["datetime"]) < end
            and not (self.lose_an_hour_today and datetime.fromisoformat(v["datetime"]) == lost)
        ]
        return payload


@pytest.mark.parametrize("lose_an_hour_today", [False, True])
def test_the_month_in_progress_is_complete_up_to_what_is_published(
    lose_an_hour_today, resources, instance
):
    current = MONTHLY.get_partition_keys()[-1]
    source = EsiosPublishedSoFar(
        source=resources["esios"].source, lose_an_hour_today=lose_an_hour_today
    )
    result = dg.materialize(
        [*ESIOS_ASSETS, *ESIOS_CHECKS],
        selection=dg.AssetSelection.assets(esios_demand_forecast, demand_forecast_esios)
        | dg.AssetSelection.checks_for_assets(esios_demand_forecast),
        resources={**resources, "esios": source},
        instance=instance,
        partition_key=current,
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["esios_hours_complete"].passed is not lose_an_hour_today
    assert result.success is not lose_an_hour_today
    if lose_an_hour_today:
        text = checks["esios_hours_complete"].metadata["incomplete"].value
        assert f"{datetime.now(MADRID):%Y-%m-%d} 11:00" in text or "10:00" in text
