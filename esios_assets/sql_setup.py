"""Create the ESIOS SQL target table ``demand_forecast_esios`` (a setup step, never the load).

    python -m esios_assets.sql_setup

Targets ``SQL_DATABASE_URL`` when set, else the local SQLite file
``{DATA_DIR}/esios/demand_forecast.sqlite`` (``DATA_DIR`` defaults to ``data``). Idempotent: an
existing table is left as it is. The same SQLAlchemy definition compiles for SQLite,
PostgreSQL and SQL Server. The load does not need this table: one made by hand with only the
brief's five columns (wall times as text or DATETIME) works too; ``datetime_utc`` is an
addition it fills and uses when present.
"""

from __future__ import annotations

import os
import sys

import sqlalchemy as sa

from resources.settings import dotenv_environ, load_settings
from resources.sql import (
    URL_ENV_VAR,
    SqlDatabase,
    SqlDatabaseError,
    default_sqlite_url,
    redact,
    scrub,
    sqlite_file,
)

DEMAND_FORECAST_TABLE = "demand_forecast_esios"

# ``datetime`` is the local (Europe/Madrid) wall time as text, which repeats in the autumn DST
# hour; ``datetime_utc`` is the UTC instant: the primary key and the per-month delete key.
DEMAND_FORECAST_DDL_COLUMNS: tuple[sa.Column, ...] = (
    sa.Column("name", sa.Unicode(200)),  # NVARCHAR(200) on SQL Server, VARCHAR(200) elsewhere
    sa.Column("id", sa.Integer, autoincrement=False),
    sa.Column("datetime", sa.String(19)),  # 'yyyy-mm-dd HH:MM:SS', local wall time
    sa.Column("demand_forecast", sa.Float),
    sa.Column("update_timestamp", sa.String(19)),
    sa.Column("datetime_utc", sa.DateTime, nullable=False),  # DATETIME / TIMESTAMP, naive UTC
    sa.PrimaryKeyConstraint("datetime_utc", name=f"pk_{DEMAND_FORECAST_TABLE}"),
)

_DEMAND_FORECAST = sa.Table(DEMAND_FORECAST_TABLE, sa.MetaData(), *DEMAND_FORECAST_DDL_COLUMNS)


def demand_forecast_table(
    metadata: sa.MetaData | None = None, *, schema: str | None = None, name: str | None = None
) -> sa.Table:
    """A fresh copy of the target table's definition (optionally in another schema/name)."""
    return _DEMAND_FORECAST.to_metadata(
        metadata if metadata is not None else sa.MetaData(),
        schema=schema,
        name=name or DEMAND_FORECAST_TABLE,
    )


def create_demand_forecast_table(
    engine: sa.Engine, *, schema: str | None = None, name: str | None = None
) -> bool:
    """Create the table unless it exists (checkfirst); True when it was created now."""
    table = demand_forecast_table(schema=schema, name=name)
    with engine.begin() as conn:
        existed = sa.inspect(conn).has_table(table.name, schema=schema)
        table.create(conn, checkfirst=True)
    return not existed


def target_url() -> str:
    """``SQL_DATABASE_URL`` if set (a secret: only ever from the environment), else the default
    SQLite file under the ``DATA_DIR`` setting."""
    return os.environ.get(URL_ENV_VAR) or default_sqlite_url(load_settings().data_dir)


def main() -> int:
    database = SqlDatabase(url=target_url())
    engine: sa.Engine | None = None
    try:
        url = database.sqlalchemy_url()
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = database.engine()
        created = create_demand_forecast_table(engine)
    except SqlDatabaseError as exc:
        print(f"sql_setup: failed: {exc}", file=sys.stderr)
        return 1
    except sa.exc.DBAPIError as exc:
        detail = scrub(str(exc.orig).strip(), url.password)
        print(
            f"sql_setup: failed on {redact(url)}: {type(exc.orig).__name__}: {detail}",
            file=sys.stderr,
        )
        return 1
    finally:
        if engine is not None:
            engine.dispose()
    if created:
        print(f"sql_setup: created table {DEMAND_FORECAST_TABLE} in {redact(url)}")
    else:
        print(f"sql_setup: table {DEMAND_FORECAST_TABLE} already exists in {redact(url)}")
    return 0


if __name__ == "__main__":
    # .env loaded as the dagster commands beside this one load it (resources.settings).
    with dotenv_environ():
        raise SystemExit(main())
