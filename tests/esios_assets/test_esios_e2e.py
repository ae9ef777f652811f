"""End to end: the brief's range through extract, SQL load and CSV; re-runs change nothing."""

from __future__ import annotations

import hashlib

import dagster as dg
import duckdb
import polars as pl
import pytest

from esios_assets.assets import (
    ESIOS_ASSETS,
    csv_path,
    demand_forecast_esios,
    esios_demand_forecast,
    esios_demand_forecast_csv,
)
from esios_assets.checks import (
    esios_hours_complete,
    esios_no_duplicate_hours,
    esios_schema,
    esios_values_plausible,
)
from esios_assets.sql_setup import create_demand_forecast_table
from resources.sql import SqlDatabase

CHECKS = [esios_hours_complete, esios_no_duplicate_hours, esios_values_plausible, esios_schema]


def month(key: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": key, "dagster/asset_partition_range_end": key}


BRIEF = {
    "dagster/asset_partition_range_start": "2017-01-01",
    "dagster/asset_partition_range_end": "2018-12-01",
}


@pytest.fixture
def resources(platform_resources, platform_env):
    database = SqlDatabase(url=f"sqlite:///{platform_env / 'esios.sqlite'}")
    create_demand_forecast_table(database.engine())
    return {**platform_resources, "sql_database": database}


def materialize(resources, instance, selection, **kwargs):
    return dg.materialize(
        [*ESIOS_ASSETS, *CHECKS],
        selection=selection,
        resources=resources,
        instance=instance,
        **kwargs,
    )


def snapshot(resources) -> tuple[int, int, str, str]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        warehouse = conn.execute("select count(*) from esios.esios_demand_forecast").fetchone()[0]
    engine = resources["sql_database"].engine()
    sql = pl.read_database("select * from demand_forecast_esios order by datetime_utc", engine)
    csv = csv_path().read_bytes()
    return (
        warehouse,
        sql.height,
        hashlib.sha256(sql.write_csv().encode()).hexdigest(),
        hashlib.sha256(csv).hexdigest(),
    )


def test_brief_range_gives_17520_rows_everywhere_and_reruns_change_nothing(resources, instance):
    assert materialize(
        resources, instance, [esios_demand_forecast, demand_forecast_esios], tags=BRIEF
    ).success
    assert materialize(resources, instance, [esios_demand_forecast_csv]).success
    first = snapshot(resources)
    assert first[:2] == (17_520, 17_520)

    csv = pl.read_csv(csv_path(), infer_schema=False)
    assert csv.columns == ["name", "id", "datetime", "demand_forecast", "update_timestamp"]
    assert csv.height == 17_520
    assert csv["datetime"].str.starts_with("2017-03-26").sum() == 23
    autumn = csv.filter(pl.col("datetime").str.starts_with("2017-10-29"))
    assert autumn.height == 25 and (autumn["datetime"] == "2017-10-29 02:00:00").sum() == 2
    assert csv["datetime"].to_list()[0] == "2017-01-01 00:00:00"

    assert materialize(
        resources, instance, [esios_demand_forecast, demand_forecast_esios], tags=BRIEF
    ).success
    assert materialize(resources, instance, [esios_demand_forecast_csv]).success
    assert snapshot(resources) == first


def test_the_sql_load_never_creates_the_table(platform_resources, platform_env, instance):
    resources = {
        **platform_resources,
        "sql_database": SqlDatabase(url=f"sqlite:///{platform_env / 'empty.sqlite'}"),
    }
    result = materialize(
        resources,
        instance,
        [esios_demand_forecast, demand_forecast_esios],
        tags=month("2017-01-01"),
        raise_on_error=False,
    )
    assert not result.success
    error = result.failure_data_for_node("demand_forecast_esios").error
    text = str(error.message) + str(error.cause.message if error.cause else "")
    assert "demand_forecast_esios" in text
    from sqlalchemy import inspect

    assert not inspect(resources["sql_database"].engine()).has_table("demand_forecast_esios")


def test_each_check_fails_on_bad_data(resources, instance):
    assert materialize(
        resources, instance, [esios_demand_forecast], partition_key="2017-03-01"
    ).success
    database = resources["warehouse"].database
    with duckdb.connect(database) as conn:
        # A lost hour, a duplicated hour and an absurd value.
        conn.execute(
            "delete from esios.esios_demand_forecast where datetime_utc = "
            "(select min(datetime_utc) from esios.esios_demand_forecast)"
        )
        conn.execute(
            "insert into esios.esios_demand_forecast select * from esios.esios_demand_forecast "
            "order by datetime_utc limit 1"
        )
        conn.execute(
            "update esios.esios_demand_forecast set demand_forecast = 1e6 where datetime_utc = "
            "(select max(datetime_utc) from esios.esios_demand_forecast)"
        )
        conn.execute("alter table esios.esios_demand_forecast alter id type varchar")
    result = dg.materialize(
        [esios_demand_forecast, *CHECKS],
        selection=dg.AssetSelection.checks(*CHECKS),
        resources=resources,
        instance=instance,
        tags=month("2017-03-01"),
        raise_on_error=False,
    )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "esios_hours_complete": False,
        "esios_no_duplicate_hours": False,
        "esios_values_plausible": False,
        "esios_schema": False,
    }


def test_reconciliation_checks_fail_when_a_copy_drifts(resources, instance):
    from sqlalchemy import text

    from esios_assets.checks import (
        demand_forecast_esios_matches_warehouse,
        esios_csv_matches_warehouse,
    )

    reconciliation = [demand_forecast_esios_matches_warehouse, esios_csv_matches_warehouse]
    selection = [esios_demand_forecast, demand_forecast_esios]
    assert materialize(resources, instance, selection, tags=month("2017-01-01")).success
    assert materialize(resources, instance, [esios_demand_forecast_csv]).success
    with resources["sql_database"].engine().begin() as conn:
        conn.execute(
            text(
                "delete from demand_forecast_esios where datetime_utc in "
                "(select datetime_utc from demand_forecast_esios limit 3)"
            )
        )
    csv_path().write_text("name,id\n")
    result = dg.materialize(
        [*ESIOS_ASSETS, *reconciliation],
        selection=dg.AssetSelection.checks(*reconciliation),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "demand_forecast_esios_matches_warehouse": False,
        "esios_csv_matches_warehouse": False,
    }
