"""The brief's load: `demand_forecast_esios` into an already existing table created by hand.

The table is made here with plain SQL, outside the platform's ``sql_setup``: exactly the brief's
five columns (wall times as text or as SQL datetimes), or those plus ``datetime_utc``. On
SQLite and PostgreSQL, a month's load replaces that month only (its Europe/Madrid wall-time
window), keeps both 02:00 rows of the October DST change, and a re-run gives the same rows once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from esios_assets.assets import ESIOS_ASSETS, demand_forecast_esios, esios_demand_forecast
from esios_assets.client import EsiosResource
from esios_assets.simulator import indicator_460_payload
from esios_assets.transform import MADRID
from resources.sql import SqlDatabase

OCTOBER = "2017-10-01"
HOUR = timedelta(hours=1)
# Per backend: (text type, datetime type, float type).
TYPES = {
    "sqlite": ("TEXT", "DATETIME", "REAL"),
    "postgresql": ("VARCHAR(19)", "TIMESTAMP", "DOUBLE PRECISION"),
}
LAYOUTS = ("five_text", "five_datetime", "with_utc")


def create_table_by_hand(engine: sa.Engine, layout: str) -> None:
    text, stamp, real = TYPES[engine.dialect.name]
    wall = stamp if layout == "five_datetime" else text
    columns = [
        f"name {'VARCHAR(200)' if engine.dialect.name == 'postgresql' else 'TEXT'}",
        "id INTEGER",
        f"datetime {wall}",
        f"demand_forecast {real}",
        f"update_timestamp {wall}",
    ]
    if layout == "with_utc":
        columns.append(f"datetime_utc {stamp} NOT NULL PRIMARY KEY")
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE demand_forecast_esios ({', '.join(columns)})"))


def wall(value) -> str:
    """A stored wall time as the brief's text, whichever type the column has."""
    return value if isinstance(value, str) else f"{value:%Y-%m-%d %H:%M:%S}"


def stored_rows(engine: sa.Engine) -> list[tuple[str, float, str]]:
    # Through the reflected table, so a DATETIME column reads back as datetime on SQLite too.
    table = sa.Table("demand_forecast_esios", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.datetime, table.c.demand_forecast, table.c.update_timestamp)
        ).all()
    return sorted((wall(r[0]), r[1], wall(r[2]) if r[2] is not None else None) for r in rows)


def neighbour_rows(layout: str, dialect: str) -> list[dict]:
    """Rows of September and November already in the table (and a stale October row)."""
    rows = [
        ("2017-09-30 23:00:00", 1.0, datetime(2017, 9, 30, 21)),
        ("2017-10-15 12:00:00", -1.0, datetime(2017, 10, 15, 10)),  # stale: replaced
        ("2017-11-01 00:00:00", 2.0, datetime(2017, 10, 31, 23)),
    ]
    out = []
    for local, value, utc in rows:
        stamp = datetime.fromisoformat(local) if layout == "five_datetime" else local
        row = {
            "name": "x",
            "id": 460,
            "datetime": stamp,
            "demand_forecast": value,
            "update_timestamp": stamp,
        }
        if layout == "with_utc":
            row["datetime_utc"] = utc
        out.append(row)
    return out


def insert_neighbours(engine: sa.Engine, layout: str) -> None:
    table = sa.Table("demand_forecast_esios", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(table), neighbour_rows(layout, engine.dialect.name))


def run_month(resources, instance, selection, month: str = OCTOBER):
    return dg.materialize(
        ESIOS_ASSETS,
        selection=selection,
        resources=resources,
        instance=instance,
        partition_key=month,
    )


def warehouse_october(resources) -> list[tuple[str, float, str]]:
    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        frame = conn.execute(
            "select datetime, demand_forecast, update_timestamp from esios.esios_demand_forecast "
            "where datetime like '2017-10-%'"
        ).pl()
    return sorted(frame.iter_rows())


def check_load(resources, instance, layout: str) -> None:
    engine = resources["sql_database"].engine()
    create_table_by_hand(engine, layout)
    insert_neighbours(engine, layout)

    assert run_month(resources, instance, [esios_demand_forecast, demand_forecast_esios]).success
    first = stored_rows(engine)
    october = [r for r in first if r[0].startswith("2017-10-")]
    assert len(october) == 745  # 31 days of 24 hours + the repeated 02:00 hour
    assert [r[0] for r in october].count("2017-10-29 02:00:00") == 2
    assert october == warehouse_october(resources)
    assert -1.0 not in [r[1] for r in october]  # the stale October row was replaced
    assert [r for r in first if not r[0].startswith("2017-10-")] == [
        ("2017-09-30 23:00:00", 1.0, "2017-09-30 23:00:00"),
        ("2017-11-01 00:00:00", 2.0, "2017-11-01 00:00:00"),
    ]

    # Re-running the month (load alone, and extract + load) gives the same rows, once.
    assert run_month(resources, instance, [demand_forecast_esios]).success
    assert stored_rows(engine) == first
    assert run_month(resources, instance, [esios_demand_forecast, demand_forecast_esios]).success
    assert stored_rows(engine) == first

    if layout == "with_utc":
        table = sa.Table("demand_forecast_esios", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            utc = conn.execute(
                sa.select(table.c.datetime_utc)
                .where(table.c.datetime == "2017-10-29 02:00:00")
                .order_by(table.c.datetime_utc)
            ).scalars()
            assert [wall(v) for v in utc] == ["2017-10-29 00:00:00", "2017-10-29 01:00:00"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_into_a_hand_made_sqlite_table(layout, platform_resources, platform_env, instance):
    path = platform_env / "target.sqlite"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    resources = {**platform_resources, "sql_database": SqlDatabase(url=f"sqlite:///{path}")}
    check_load(resources, instance, layout)


@pytest.mark.integration
@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_into_a_hand_made_postgres_table(
    layout, platform_resources, instance, postgres_database
):
    resources = {**platform_resources, "sql_database": SqlDatabase(url=postgres_database)}
    try:
        check_load(resources, instance, layout)
    finally:
        resources["sql_database"].engine().dispose()


class EsiosWithBoundaryHours(EsiosResource):
    """ESIOS answering with one hour either side of the requested month as well (as an
    inclusive or UTC-read range would), to show such hours never reach a table."""

    def fetch_month(self, month_start):
        payload = super().fetch_month(month_start)
        first = datetime(month_start.year, month_start.month, 1, tzinfo=MADRID)
        following = (first + timedelta(days=32)).replace(day=1)
        before = indicator_460_payload(first - HOUR, first - HOUR)["indicator"]["values"]
        after = indicator_460_payload(following, following)["indicator"]["values"]
        payload["indicator"]["values"] = [*before, *payload["indicator"]["values"], *after]
        return payload


def test_rows_outside_the_runs_months_are_dropped(platform_resources, platform_env, instance):
    path = platform_env / "target.sqlite"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    database = SqlDatabase(url=f"sqlite:///{path}")
    create_table_by_hand(database.engine(), "with_utc")
    resources = {
        **platform_resources,
        "esios": EsiosWithBoundaryHours(source=platform_resources["esios"].source),
        "sql_database": database,
    }
    for _ in range(2):
        assert run_month(
            resources, instance, [esios_demand_forecast, demand_forecast_esios]
        ).success
    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        stored = conn.execute(
            "select min(datetime), max(datetime), count(*) from esios.esios_demand_forecast"
        ).fetchone()
    assert stored == ("2017-10-01 00:00:00", "2017-10-31 23:00:00", 745)
    rows = stored_rows(database.engine())
    assert (rows[0][0], rows[-1][0], len(rows)) == (
        "2017-10-01 00:00:00",
        "2017-10-31 23:00:00",
        745,
    )
