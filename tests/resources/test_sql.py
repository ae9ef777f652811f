"""SqlDatabase: URL building, SQL Server statements, and window replacement on SQLite/PostgreSQL."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql, sqlite

from esios_assets import sql_setup
from esios_assets.sql_setup import (
    DEMAND_FORECAST_TABLE,
    create_demand_forecast_table,
    demand_forecast_table,
)
from resources.sql import (
    SqlConfigError,
    SqlConnectionError,
    SqlDatabase,
    SqlDataError,
    SqlTableNotFoundError,
    datetime_text,
    default_sqlite_url,
    delete_window_statement,
    insert_statement,
)

TABLE = DEMAND_FORECAST_TABLE
JAN = (datetime(2024, 1, 1), datetime(2024, 2, 1))
FEB = (datetime(2024, 2, 1), datetime(2024, 3, 1))


def forecast_frame(start: datetime, hours: int, value: float = 100.0) -> pl.DataFrame:
    """ESIOS-shaped rows, hourly from ``start`` (UTC); ``datetime_utc`` is tz-aware UTC."""
    instants = [start + timedelta(hours=h) for h in range(hours)]
    return pl.DataFrame(
        {
            "name": ["Previsión diaria de la demanda eléctrica peninsular"] * hours,
            "id": [460] * hours,
            "datetime": [(t + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S") for t in instants],
            "demand_forecast": [value + h for h in range(hours)],
            "update_timestamp": ["2024-03-01 10:00:00"] * hours,
            "datetime_utc": [t.replace(tzinfo=UTC) for t in instants],
        }
    )


def full_text(exc: BaseException) -> str:
    """Every message a log of this error would show: its own and each chained exception's."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append("".join(traceback.format_exception_only(seen)))
        parts.append(repr(seen))
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(parts)


# ---------------------------------------------------------------------------- URL building


def test_url_from_fields_for_sql_server():
    db = SqlDatabase(
        host="server.database.com", database="mock_db", user="user1", password="123abc"
    )
    url = db.sqlalchemy_url()
    assert url.render_as_string(hide_password=True) == (
        "mssql+pyodbc://user1:***@server.database.com/mock_db?driver=ODBC+Driver+18+for+SQL+Server"
    )
    assert url.password == "123abc"
    assert "123abc" not in repr(db)
    assert "123abc" not in str(url)


def test_password_with_url_special_characters_round_trips():
    password = "p@ss/w:rd?#%&+ x"
    url = SqlDatabase(host="h", database="d", user="u", password=password).sqlalchemy_url()
    assert url.password == password
    assert url.host == "h"
    assert url.database == "d"
    assert sa.make_url(url.render_as_string(hide_password=False)).password == password


def test_pymssql_url_has_port_and_no_odbc_driver():
    url = SqlDatabase(
        dialect="mssql+pymssql",
        host="server.database.com",
        port=1433,
        database="mock_db",
        user="user1",
        password="123abc",
    ).sqlalchemy_url()
    assert url.render_as_string(hide_password=True) == (
        "mssql+pymssql://user1:***@server.database.com:1433/mock_db"
    )


def test_url_wins_over_fields():
    db = SqlDatabase(
        url="postgresql+psycopg2://other@db.example:5433/warehouse", host="server.database.com"
    )
    url = db.sqlalchemy_url()
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "db.example",
        5433,
        "warehouse",
    )


def test_default_sqlite_url(tmp_path):
    assert default_sqlite_url("data") == "sqlite:///data/esios/demand_forecast.sqlite"
    url = sa.make_url(default_sqlite_url(tmp_path))
    assert url.database == str(tmp_path / "esios" / "demand_forecast.sqlite")


def test_fields_without_host_are_a_clear_error():
    with pytest.raises(SqlConfigError, match="SQL_DATABASE_URL"):
        SqlDatabase().sqlalchemy_url()


# ---------------------------------------------------------------------------- SQL Server SQL


def test_statements_compile_for_sql_server():
    table = demand_forecast_table()
    delete = delete_window_statement(table, "datetime_utc", *JAN)
    # Without the DBAPI loaded the dialect renders named parameters; pyodbc sends them as `?`.
    assert str(delete.compile(dialect=mssql.dialect())) == (
        "DELETE FROM demand_forecast_esios WHERE demand_forecast_esios.datetime_utc >= "
        ":datetime_utc_1 AND demand_forecast_esios.datetime_utc < :datetime_utc_2"
    )
    insert = str(insert_statement(table).compile(dialect=mssql.dialect()))
    assert insert == (
        "INSERT INTO demand_forecast_esios (name, id, datetime, demand_forecast, "
        "update_timestamp, datetime_utc) VALUES (:name, :id, :datetime, :demand_forecast, "
        ":update_timestamp, :datetime_utc)"
    )
    # Bound parameters, never literals: the window values travel separately.
    assert delete.compile(dialect=mssql.dialect()).params == {
        "datetime_utc_1": JAN[0],
        "datetime_utc_2": JAN[1],
    }


def test_ddl_compiles_for_sql_server_postgres_and_sqlite():
    table = demand_forecast_table()
    ddl = " ".join(str(sa.schema.CreateTable(table).compile(dialect=mssql.dialect())).split())
    assert ddl.startswith("CREATE TABLE demand_forecast_esios (")
    for part in (
        "name NVARCHAR(200) NULL",
        "id INTEGER NULL",
        "datetime VARCHAR(19) NULL",
        "demand_forecast FLOAT NULL",
        "update_timestamp VARCHAR(19) NULL",
        "datetime_utc DATETIME NOT NULL",
        "CONSTRAINT pk_demand_forecast_esios PRIMARY KEY (datetime_utc)",
    ):
        assert part in ddl
    assert "IDENTITY" not in ddl
    pg = str(sa.schema.CreateTable(table).compile(dialect=postgresql.dialect()))
    assert "datetime_utc TIMESTAMP WITHOUT TIME ZONE NOT NULL" in pg
    assert "name VARCHAR(200)" in pg
    lite = str(sa.schema.CreateTable(table).compile(dialect=sqlite.dialect()))
    assert "datetime_utc DATETIME NOT NULL" in lite


# ---------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_db(tmp_path) -> SqlDatabase:
    path = tmp_path / "target.sqlite"
    url = f"sqlite:///{path}"
    sa.create_engine(url).connect().close()  # an empty database file, no tables
    db = SqlDatabase(url=url)
    yield db
    db.engine().dispose()


def table_names(db: SqlDatabase, schema: str | None = None) -> list[str]:
    return sa.inspect(db.engine()).get_table_names(schema=schema)


def test_missing_table_is_a_clear_error_and_nothing_is_created(sqlite_db):
    with pytest.raises(SqlTableNotFoundError) as err:
        sqlite_db.replace_rows(
            TABLE, forecast_frame(JAN[0], 3), key_column="datetime_utc", start=JAN[0], end=JAN[1]
        )
    message = str(err.value)
    assert TABLE in message
    assert "target.sqlite" in message
    assert isinstance(err.value, ValueError)
    assert table_names(sqlite_db) == []


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "absent" / "target.sqlite"
    db = SqlDatabase(url=f"sqlite:///{path}")
    with pytest.raises(SqlTableNotFoundError, match="does not exist"):
        db.count_rows(TABLE)
    assert not path.exists()


def test_replace_rows_is_idempotent_per_window(sqlite_db, caplog):
    caplog.set_level(logging.INFO)
    assert create_demand_forecast_table(sqlite_db.engine()) is True
    assert create_demand_forecast_table(sqlite_db.engine()) is False  # checkfirst
    frame = forecast_frame(JAN[0], 24 * 31)
    for _ in range(2):
        inserted = sqlite_db.replace_rows(
            TABLE, frame, key_column="datetime_utc", start=JAN[0], end=JAN[1]
        )
        assert inserted == 24 * 31
        assert sqlite_db.count_rows(TABLE) == 24 * 31

    # A second window keeps the first; re-loading it with new values replaces only it.
    sqlite_db.replace_rows(
        TABLE, forecast_frame(FEB[0], 10), key_column="datetime_utc", start=FEB[0], end=FEB[1]
    )
    sqlite_db.replace_rows(
        TABLE,
        forecast_frame(FEB[0], 5, value=7.0),
        key_column="datetime_utc",
        start=FEB[0],
        end=FEB[1],
    )
    assert sqlite_db.count_rows(TABLE) == 24 * 31 + 5
    assert "inserted 5 rows" in caplog.text
    assert sqlite_db.count_rows(TABLE, key_column="datetime_utc", start=JAN[0], end=JAN[1]) == (
        24 * 31
    )
    with sqlite_db.engine().connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT name, id, datetime, demand_forecast, update_timestamp, datetime_utc "
                "FROM demand_forecast_esios ORDER BY datetime_utc DESC LIMIT 1"
            )
        ).one()
    assert row[1:5] == (460, "2024-02-01 05:00:00", 11.0, "2024-03-01 10:00:00")
    assert row[0].startswith("Previsión")
    assert row[5].startswith("2024-02-01 04:00:00")


def test_aware_window_bounds_are_compared_in_utc(sqlite_db):
    create_demand_forecast_table(sqlite_db.engine())
    madrid_start = datetime(2024, 1, 1, 0, 0, tzinfo=UTC) - timedelta(hours=1)
    frame = forecast_frame(madrid_start.replace(tzinfo=None), 3)
    sqlite_db.replace_rows(
        TABLE,
        frame,
        key_column="datetime_utc",
        start=madrid_start,
        end=madrid_start + timedelta(days=31),
    )
    assert sqlite_db.count_rows(
        TABLE, key_column="datetime_utc", start=datetime(2023, 12, 31, 23), end=JAN[1]
    ) == (3)


def test_failure_mid_load_rolls_back_and_keeps_previous_rows(sqlite_db):
    create_demand_forecast_table(sqlite_db.engine())
    before = forecast_frame(JAN[0], 6)
    sqlite_db.replace_rows(TABLE, before, key_column="datetime_utc", start=JAN[0], end=JAN[1])

    # 2nd batch (rows 3-4) repeats a primary key of the 1st batch: the insert fails there.
    bad = forecast_frame(JAN[0], 4, value=-1.0)
    bad = bad.with_columns(
        pl.Series("datetime_utc", [*bad["datetime_utc"][:2], *bad["datetime_utc"][:2]])
    )
    small = SqlDatabase(url=sqlite_db.url, batch_size=2)
    with pytest.raises(sa.exc.IntegrityError):
        small.replace_rows(TABLE, bad, key_column="datetime_utc", start=JAN[0], end=JAN[1])
    small.engine().dispose()

    assert sqlite_db.count_rows(TABLE) == 6
    with sqlite_db.engine().connect() as conn:
        values = conn.execute(
            sa.text("SELECT demand_forecast FROM demand_forecast_esios ORDER BY datetime_utc")
        ).scalars()
        assert list(values) == before["demand_forecast"].to_list()


def test_extra_and_missing_columns_are_clear_errors(sqlite_db):
    create_demand_forecast_table(sqlite_db.engine())
    extra = forecast_frame(JAN[0], 2).with_columns(
        pl.lit(1).alias("geo_id"), pl.lit("x").alias("z")
    )
    with pytest.raises(SqlDataError, match="lacks: geo_id, z"):
        sqlite_db.replace_rows(TABLE, extra, key_column="datetime_utc", start=JAN[0], end=JAN[1])
    no_key = forecast_frame(JAN[0], 2).drop("datetime_utc")
    with pytest.raises(SqlDataError, match="no default: datetime_utc"):
        sqlite_db.replace_rows(TABLE, no_key, key_column="datetime_utc", start=JAN[0], end=JAN[1])
    assert sqlite_db.count_rows(TABLE) == 0


def test_rows_outside_the_window_are_refused(sqlite_db):
    create_demand_forecast_table(sqlite_db.engine())
    with pytest.raises(SqlDataError, match="1 frame rows have datetime_utc outside"):
        sqlite_db.replace_rows(
            TABLE,
            forecast_frame(JAN[1] - timedelta(hours=1), 2),
            key_column="datetime_utc",
            start=JAN[0],
            end=JAN[1],
        )
    assert sqlite_db.count_rows(TABLE) == 0


def test_types_and_nulls(sqlite_db):
    create_demand_forecast_table(sqlite_db.engine())
    frame = pl.DataFrame(
        {
            "name": [None, "b"],
            "id": pl.Series([None, 2], dtype=pl.Int64),
            "demand_forecast": [float("nan"), None],
            "datetime_utc": [datetime(2024, 1, 1), datetime(2024, 1, 1, 1)],
        }
    )
    sqlite_db.replace_rows(TABLE, frame, key_column="datetime_utc", start=JAN[0], end=JAN[1])
    with sqlite_db.engine().connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT name, id, demand_forecast FROM demand_forecast_esios ORDER BY datetime_utc"
            )
        ).all()
    assert [tuple(r) for r in rows] == [(None, None, None), ("b", 2, None)]


def test_resource_in_a_dagster_asset_with_env_var(tmp_path, monkeypatch):
    path = tmp_path / "esios" / "demand_forecast.sqlite"
    path.parent.mkdir()
    create_demand_forecast_table(sa.create_engine(f"sqlite:///{path}"))
    monkeypatch.setenv("TEST_SQL_URL", default_sqlite_url(tmp_path))

    @dg.asset
    def load(sql: SqlDatabase) -> dg.MaterializeResult:
        rows = sql.replace_rows(
            TABLE, forecast_frame(JAN[0], 3), key_column="datetime_utc", start=JAN[0], end=JAN[1]
        )
        return dg.MaterializeResult(metadata={"rows": rows})

    result = dg.materialize([load], resources={"sql": SqlDatabase(url=dg.EnvVar("TEST_SQL_URL"))})
    assert result.success
    assert SqlDatabase(url=default_sqlite_url(tmp_path)).count_rows(TABLE) == 3


def test_sql_setup_main_creates_default_sqlite(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SQL_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert sql_setup.main() == 0
    assert sql_setup.main() == 0
    out = capsys.readouterr().out
    assert "created table demand_forecast_esios" in out
    assert "already exists" in out
    db = SqlDatabase(url=default_sqlite_url(tmp_path / "data"))
    assert db.count_rows(TABLE) == 0


# ---------------------------------------------------------------------------- errors, secrets


def test_invalid_url_names_the_variable(monkeypatch, capsys):
    db = SqlDatabase(url="notaurl")
    with pytest.raises(SqlConfigError, match="SQL_DATABASE_URL"):
        db.sqlalchemy_url()
    with pytest.raises(SqlConfigError, match="SQL_DATABASE_URL"):
        db.replace_rows(
            TABLE, forecast_frame(JAN[0], 1), key_column="datetime_utc", start=JAN[0], end=JAN[1]
        )
    monkeypatch.setenv("SQL_DATABASE_URL", "notaurl")
    assert sql_setup.main() == 1
    assert "SQL_DATABASE_URL" in capsys.readouterr().err


def test_unknown_dialect_and_missing_driver_are_clear(capsys):
    with pytest.raises(SqlConfigError, match="no dialect 'nosuchdb'"):
        SqlDatabase(url="nosuchdb://u:secretpw@h/x").engine()
    try:
        import pyodbc  # noqa: F401
    except ImportError:
        with pytest.raises(SqlConfigError, match="not installed") as err:
            SqlDatabase(host="h", user="u", password="secretpw").engine()
        assert "secretpw" not in full_text(err.value)


def test_unreachable_host_names_it_and_hides_the_password(caplog):
    caplog.set_level(logging.DEBUG)
    db = SqlDatabase(url="postgresql+psycopg2://u:secretpw@127.0.0.1:1/x", connect_timeout=5)
    with pytest.raises(SqlConnectionError) as err:
        db.replace_rows(
            TABLE, forecast_frame(JAN[0], 1), key_column="datetime_utc", start=JAN[0], end=JAN[1]
        )
    message = str(err.value)
    assert "127.0.0.1" in message
    assert "u:***@127.0.0.1:1/x" in message
    assert "secretpw" not in full_text(err.value)
    assert "secretpw" not in caplog.text
    with pytest.raises(SqlConnectionError) as err:
        db.count_rows(TABLE)
    assert "secretpw" not in full_text(err.value)

    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3: not installed here, still clear.
    with pytest.raises((SqlConfigError, SqlConnectionError)) as err:
        SqlDatabase(url="postgresql://u:secretpw@127.0.0.1:1/x", connect_timeout=5).count_rows(
            TABLE
        )
    assert "secretpw" not in full_text(err.value)
    assert "SQL_DATABASE_URL" in str(err.value) or "127.0.0.1" in str(err.value)


def test_unreachable_sql_server_with_pymssql():
    pytest.importorskip("pymssql", reason="pymssql (optional SQL Server driver) not installed")
    db = SqlDatabase(
        dialect="mssql+pymssql",
        host="127.0.0.1",
        port=1,
        database="mock_db",
        user="user1",
        password="123abc",
        connect_timeout=5,
    )
    with pytest.raises(SqlConnectionError) as err:
        db.count_rows(TABLE)
    text = full_text(err.value)
    assert "host 127.0.0.1 port 1 database mock_db" in text
    assert "mssql+pymssql://user1:***@127.0.0.1:1/mock_db" in text
    assert "123abc" not in text


def test_password_field_never_in_errors():
    db = SqlDatabase(
        dialect="postgresql+psycopg2",
        host="127.0.0.1",
        port=1,
        database="x",
        user="u",
        password="secret@pw/1",
        connect_timeout=5,
    )
    with pytest.raises(SqlConnectionError) as err:
        db.count_rows(TABLE)
    text = full_text(err.value)
    assert "secret@pw/1" not in text
    assert "secret%40pw%2F1" not in text
    assert "host 127.0.0.1 port 1 database x" in text


# ---------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def postgres_db(postgres_url, postgres_schema):
    db = SqlDatabase(url=postgres_url)
    try:
        yield db, postgres_schema
    finally:
        db.engine().dispose()


@pytest.mark.integration
def test_postgres_round_trip(postgres_db):
    db, schema = postgres_db
    frame = forecast_frame(JAN[0], 24 * 31)
    with pytest.raises(SqlTableNotFoundError, match=f"{schema}.{TABLE}"):
        db.replace_rows(
            TABLE, frame, key_column="datetime_utc", start=JAN[0], end=JAN[1], schema=schema
        )
    assert table_names(db, schema) == []

    assert create_demand_forecast_table(db.engine(), schema=schema) is True
    for _ in range(2):
        assert db.replace_rows(
            TABLE, frame, key_column="datetime_utc", start=JAN[0], end=JAN[1], schema=schema
        ) == (24 * 31)
    db.replace_rows(
        TABLE,
        forecast_frame(FEB[0], 10),
        key_column="datetime_utc",
        start=FEB[0],
        end=FEB[1],
        schema=schema,
    )
    assert db.count_rows(TABLE, schema=schema) == 24 * 31 + 10
    assert (
        db.count_rows(TABLE, key_column="datetime_utc", start=FEB[0], end=FEB[1], schema=schema)
        == 10
    )

    bad = forecast_frame(FEB[0], 4, value=-1.0)
    bad = bad.with_columns(
        pl.Series("datetime_utc", [*bad["datetime_utc"][:2], *bad["datetime_utc"][:2]])
    )
    small = SqlDatabase(url=db.url, batch_size=2)
    with pytest.raises(sa.exc.IntegrityError):
        small.replace_rows(
            TABLE, bad, key_column="datetime_utc", start=FEB[0], end=FEB[1], schema=schema
        )
    small.engine().dispose()
    assert db.count_rows(TABLE, schema=schema) == 24 * 31 + 10

    extra = forecast_frame(FEB[0], 1).with_columns(pl.lit(1).alias("geo_id"))
    with pytest.raises(SqlDataError, match="geo_id"):
        db.replace_rows(
            TABLE, extra, key_column="datetime_utc", start=FEB[0], end=FEB[1], schema=schema
        )

    with db.engine().connect() as conn:
        first = conn.execute(
            sa.select(demand_forecast_table(schema=schema)).order_by("datetime_utc").limit(1)
        ).one()
    assert first.datetime_utc == datetime(2024, 1, 1)
    assert first.id == 460
    assert first.demand_forecast == 100.0
    assert first.datetime == "2024-01-01 01:00:00"


# ---------------------------------------------------------------------------- tables made by hand


def hand_made_text_table(engine: sa.Engine) -> None:
    """Wall times as text, mixed-case key name, no primary key: as a user might make it."""
    with engine.begin() as conn:
        conn.execute(
            sa.text('CREATE TABLE wall_times ("DateTime" VARCHAR(30), demand_forecast FLOAT)')
        )


def text_window_round_trip(db: SqlDatabase) -> None:
    hand_made_text_table(db.engine())
    assert db.column_names("wall_times") == ["DateTime", "demand_forecast"]
    hours = [datetime(2024, 1, 31, 22), datetime(2024, 1, 31, 23), datetime(2024, 2, 1)]
    frame = pl.DataFrame({"datetime": hours, "demand_forecast": [1.0, 2.0, 3.0]})
    db.replace_rows(
        "wall_times", frame[:2], key_column="datetime", start=JAN[0], end=JAN[1]
    )  # datetimes in, the brief's text stored; the bounds compare as text
    db.replace_rows("wall_times", frame[2:], key_column="datetime", start=FEB[0], end=FEB[1])
    db.replace_rows(
        "wall_times",
        frame[1:2].with_columns(pl.lit(9.0).alias("demand_forecast")),
        key_column="datetime",
        start=JAN[0],
        end=JAN[1],
    )
    with db.engine().connect() as conn:
        rows = conn.execute(sa.text('SELECT "DateTime", demand_forecast FROM wall_times')).all()
    assert sorted(tuple(r) for r in rows) == [
        ("2024-01-31 23:00:00", 9.0),
        ("2024-02-01 00:00:00", 3.0),
    ]
    assert db.count_rows("wall_times", key_column="DateTime", start=FEB[0], end=FEB[1]) == 1
    assert datetime_text(datetime(2024, 1, 1, 0, 0, 0, 500000)) == "2024-01-01 00:00:00.500"


def test_text_key_column_of_a_hand_made_sqlite_table(sqlite_db):
    text_window_round_trip(sqlite_db)


@pytest.mark.integration
def test_text_key_column_of_a_hand_made_postgres_table(postgres_database):
    db = SqlDatabase(url=postgres_database)
    try:
        text_window_round_trip(db)
    finally:
        db.engine().dispose()
