"""A SQL connector for any database SQLAlchemy speaks: SQL Server, PostgreSQL, SQLite, MySQL...

``SqlDatabase`` loads a polars DataFrame into a table that already exists. A load replaces one
window of a key column (``DELETE ... WHERE key >= start AND key < end`` then batched ``INSERT``)
in a single transaction, so re-running a window gives the same rows, once, and a failure part way
leaves the previous rows in place. Tables are reflected from the database, never created here:
``python -m esios_assets.sql_setup`` creates the ESIOS target table. Values follow the table's
column types, so one frame fits tables made by hand: a datetime bound for a text column (VARCHAR,
TEXT, NVARCHAR) is written as ``yyyy-mm-dd HH:MM:SS`` text, which sorts as time does, and a text
key column's window bounds are written the same way.

Secrets: the password reaches the resource through ``dg.EnvVar``; URLs are only ever rendered
with the password hidden, and errors raised here never carry the password or a chained driver
exception that might.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import sqlalchemy as sa
from pydantic import Field, PrivateAttr
from sqlalchemy import exc as sa_exc

from resources.clock import naive_utc

URL_ENV_VAR = "SQL_DATABASE_URL"
# Datetimes in text columns: the brief's "yyyy-mm-dd HH:MM:SS"; a sub-second part only when there
# is one (3 or 6 digits, as polars' "%.f" writes it), so the text still sorts chronologically.
TEXT_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PYODBC = "mssql+pyodbc"
PYMSSQL = "mssql+pymssql"

# The driver keyword that bounds how long opening a connection may take, per (backend, driver).
_CONNECT_TIMEOUT_ARG = {
    ("postgresql", "psycopg2"): "connect_timeout",
    ("postgresql", "psycopg"): "connect_timeout",
    ("mssql", "pyodbc"): "timeout",
    ("mssql", "pymssql"): "login_timeout",
    ("mysql", "pymysql"): "connect_timeout",
    ("mysql", "mysqldb"): "connect_timeout",
}


class SqlDatabaseError(Exception):
    """Base class of the connector's own errors (messages never contain the password)."""


class SqlConfigError(SqlDatabaseError, ValueError):
    """The connection settings cannot be used (bad URL, unknown dialect, driver not installed)."""


class SqlConnectionError(SqlDatabaseError, ConnectionError):
    """The database server could not be reached or refused the login."""


class SqlTableNotFoundError(SqlDatabaseError, ValueError):
    """The target table does not exist (the connector never creates tables)."""


class SqlDataError(SqlDatabaseError, ValueError):
    """The frame does not fit the table or the window (missing/extra columns, rows outside)."""


def default_sqlite_url(data_dir: str | Path) -> str:
    """The local fallback target: ``sqlite:///{data_dir}/esios/demand_forecast.sqlite``."""
    return f"sqlite:///{(Path(data_dir) / 'esios' / 'demand_forecast.sqlite').as_posix()}"


def redact(url: sa.URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def sqlite_file(url: sa.URL) -> Path | None:
    """The database file of a file-backed SQLite URL; None for other backends or in-memory."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def delete_window_statement(table: sa.Table, key_column: str, start: Any, end: Any) -> sa.Delete:
    """``DELETE FROM table WHERE key_column >= :start AND key_column < :end``."""
    key = table.c[key_column]
    return sa.delete(table).where(key >= start, key < end)


def insert_statement(table: sa.Table) -> sa.Insert:
    """``INSERT INTO table (...) VALUES (...)``: run with a list of dicts it is an executemany."""
    return sa.insert(table)


def _qualified(table: str, schema: str | None) -> str:
    return f"{schema}.{table}" if schema else table


def scrub(text: str, secret: str | None) -> str:
    """Remove a secret (and its URL-escaped form) from a driver's message."""
    if not secret:
        return text
    from urllib.parse import quote, quote_plus

    for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
        text = text.replace(form, "***")
    return text


def _column_wants_tz(column: sa.Column) -> bool:
    return bool(getattr(column.type, "timezone", False))


def _is_text(column: sa.Column) -> bool:
    return isinstance(column.type, sa.String)


def datetime_text(moment: datetime) -> str:
    """A naive datetime as a text column stores it (what ``_python_rows`` writes for polars)."""
    micro = moment.microsecond
    fraction = (
        "" if not micro else f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"
    )
    return moment.strftime(TEXT_DATETIME_FORMAT) + fraction


def _bound(value: Any, key: sa.Column) -> Any:
    """A window bound as the key column compares it: naive UTC unless the column keeps a zone,
    and text for a text column."""
    if not _column_wants_tz(key):
        value = naive_utc(value)
    if _is_text(key):
        if isinstance(value, datetime):
            return datetime_text(value)
        if isinstance(value, date):
            return value.isoformat()
    return value


def _has_default(table: sa.Table, column: sa.Column) -> bool:
    return (
        column.server_default is not None
        or column.default is not None
        or column.identity is not None
        or column.computed is not None
        or table.autoincrement_column is column
    )


def _python_rows(
    frame: pl.DataFrame, keep_tz: set[str], as_text: Collection[str] = ()
) -> list[tuple]:
    """Rows of plain Python values: Datetime -> datetime (naive UTC unless the column keeps a
    zone), floats -> float (NaN -> None), ints -> int, strings -> str, nulls -> None; Datetime
    and Date columns in ``as_text`` (text table columns) -> their ``yyyy-mm-dd[ HH:MM:SS]`` text."""
    exprs = []
    for name, dtype in frame.schema.items():
        expr = pl.col(name)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone and name not in keep_tz:
            expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        if isinstance(dtype, pl.Datetime) and name in as_text:
            expr = expr.dt.to_string(f"{TEXT_DATETIME_FORMAT}%.f")
        elif isinstance(dtype, pl.Date) and name in as_text:
            expr = expr.dt.to_string("%Y-%m-%d")
        elif dtype.is_float():
            expr = expr.fill_nan(None)
        exprs.append(expr)
    return list(frame.select(exprs).iter_rows())


class SqlDatabase(dg.ConfigurableResource):
    """A SQL database reached through SQLAlchemy: a full URL, or dialect + host fields.

    ``url`` (``SQL_DATABASE_URL``) wins when set. Otherwise the URL is built from ``dialect``,
    ``host``, ``port``, ``database``, ``user`` and ``password`` with ``sqlalchemy.URL.create``
    (so special characters in the password need no escaping); ``mssql+pyodbc`` adds the ODBC
    driver name as the ``driver`` query parameter.
    """

    url: str | None = Field(
        default=None,
        repr=False,
        description=f"SQLAlchemy URL ({URL_ENV_VAR}); wins over the individual fields.",
    )
    dialect: str = Field(
        default=PYODBC, description="SQLAlchemy dialect+driver, e.g. mssql+pyodbc, mssql+pymssql."
    )
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = Field(
        default=None, repr=False, description="Pass through dg.EnvVar; never logged."
    )
    odbc_driver: str = Field(
        default="ODBC Driver 18 for SQL Server",
        description="ODBC driver name, the `driver` query parameter of mssql+pyodbc URLs.",
    )
    batch_size: int = Field(default=5000, description="Rows per executemany INSERT batch.")
    connect_timeout: int = Field(
        default=30, description="Seconds to wait for a connection before failing (0: driver's)."
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ connection

    def sqlalchemy_url(self) -> sa.URL:
        """The target URL (built with ``URL.create``, never by string formatting)."""
        if self.url:
            try:
                return sa.make_url(self.url)
            except (sa_exc.ArgumentError, ValueError):  # ValueError: e.g. a non-numeric port
                raise SqlConfigError(
                    f"{URL_ENV_VAR} (SqlDatabase.url) is not a valid SQLAlchemy URL; expected "
                    "dialect+driver://user:password@host:port/database, e.g. "
                    "mssql+pyodbc://user@server/db?driver=ODBC+Driver+18+for+SQL+Server or "
                    "sqlite:///path/to/file.sqlite"
                ) from None
        backend = self.dialect.split("+", 1)[0]
        if not self.host and backend != "sqlite":
            raise SqlConfigError(
                f"SqlDatabase needs {URL_ENV_VAR} (url) or a host for dialect {self.dialect!r}"
            )
        query = {"driver": self.odbc_driver} if self.dialect == PYODBC and self.odbc_driver else {}
        return sa.URL.create(
            drivername=self.dialect,
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=query,
        )

    def _describe(self, url: sa.URL) -> str:
        where = f"database file {url.database}" if sqlite_file(url) else f"host {url.host}"
        if url.port:
            where += f" port {url.port}"
        if url.database and not sqlite_file(url):
            where += f" database {url.database}"
        return f"{where} ({redact(url)})"

    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, created on first use and cached (pool_pre_ping on)."""
        if self._engine is not None:
            return self._engine
        url = self.sqlalchemy_url()
        source = URL_ENV_VAR if self.url else "SqlDatabase.dialect"
        try:
            engine = sa.create_engine(url, **self._engine_options(url))
        except sa_exc.NoSuchModuleError:
            raise SqlConfigError(
                f"{source}: SQLAlchemy has no dialect {url.drivername!r} ({redact(url)})"
            ) from None
        except ImportError as exc:
            raise SqlConfigError(
                f"{source}: the Python driver for {url.drivername!r} is not installed "
                f"({exc.name or exc}); install it (mssql+pyodbc also needs Microsoft's ODBC "
                "driver; mssql+pymssql needs only `pip install pymssql`)"
            ) from None
        self._engine = engine
        return engine

    def _engine_options(self, url: sa.URL) -> dict[str, Any]:
        options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
        backend, driver = url.get_backend_name(), url.get_driver_name()  # may raise
        if (backend, driver) == ("mssql", "pyodbc"):
            options["fast_executemany"] = True
        timeout_arg = _CONNECT_TIMEOUT_ARG.get((backend, driver))
        if timeout_arg and self.connect_timeout > 0 and timeout_arg not in url.query:
            options["connect_args"] = {timeout_arg: self.connect_timeout}
        return options

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A connection; failing to open one raises ``SqlConnectionError`` naming the host."""
        engine = self.engine()
        url = engine.url
        path = sqlite_file(url)
        if path is not None and not path.is_file():
            # sqlite3 would silently create an empty file: the target must already exist.
            raise SqlTableNotFoundError(
                f"SQLite database file {path} does not exist ({redact(url)}); "
                "create it with `python -m esios_assets.sql_setup`"
            )
        try:
            conn = engine.connect()
        except sa_exc.DBAPIError as exc:
            detail = scrub(str(exc.orig).strip(), url.password)
            raise SqlConnectionError(
                f"could not connect to {self._describe(url)}: {type(exc.orig).__name__}: {detail}"
            ) from None
        with conn:
            yield conn

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _reflect(self, conn: sa.Connection, table: str, schema: str | None) -> sa.Table:
        try:
            return sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
        except sa_exc.NoSuchTableError:
            raise SqlTableNotFoundError(
                f"table {_qualified(table, schema)} does not exist in "
                f"{redact(conn.engine.url)}; the loader never creates tables: create it first "
                "(for the ESIOS target: `python -m esios_assets.sql_setup`)"
            ) from None

    # ------------------------------------------------------------------ loading

    def column_names(self, table: str, *, schema: str | None = None) -> list[str]:
        """The table's column names, as the database reports them (the table must exist)."""
        with self._connect() as conn:
            return list(self._reflect(conn, table, schema).c.keys())

    def replace_rows(
        self,
        table: str,
        frame: pl.DataFrame,
        *,
        key_column: str,
        start: Any,
        end: Any,
        schema: str | None = None,
    ) -> int:
        """Replace the rows with ``start <= key_column < end`` by ``frame``; returns rows inserted.

        One transaction: DELETE the window, then INSERT the frame in batches of ``batch_size``
        (executemany, bound parameters). Any failure rolls back, keeping the previous rows.
        Every frame row must fall inside the window, or a re-run could not replace it.
        Aware datetimes (frame values and bounds) are stored as naive UTC unless the column
        is a time-zone-aware type; datetimes for text columns are stored as text
        (``TEXT_DATETIME_FORMAT``). Column names match case-insensitively when unambiguous.
        """
        if self.batch_size < 1:
            raise SqlConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        logger = dg.get_dagster_logger()
        with self._connect() as conn, conn.begin():
            target = self._reflect(conn, table, schema)
            names = self._match_columns(target, frame, table, schema)
            key = self._key(target, key_column, table, schema)
            keep_tz = {c for c in frame.columns if _column_wants_tz(target.c[names[c]])}
            as_text = {c for c in frame.columns if _is_text(target.c[names[c]])}
            rows = _python_rows(frame, keep_tz, as_text)
            lo, hi = _bound(start, key), _bound(end, key)
            self._check_window(frame, rows, names, key.key, lo, hi)

            deleted = conn.execute(delete_window_statement(target, key.key, lo, hi)).rowcount
            insert = insert_statement(target)
            keys = [names[c] for c in frame.columns]
            inserted = 0
            for offset in range(0, len(rows), self.batch_size):
                batch = rows[offset : offset + self.batch_size]
                conn.execute(insert, [dict(zip(keys, row, strict=True)) for row in batch])
                inserted += len(batch)
        logger.info(
            f"replaced {key.name} in [{lo}, {hi}) of {_qualified(table, schema)}: deleted "
            f"{deleted if deleted is not None and deleted >= 0 else 'unknown'}, inserted "
            f"{inserted} rows ({redact(self.engine().url)})"
        )
        return inserted

    @staticmethod
    def _key(target: sa.Table, key_column: str, table: str, schema: str | None) -> sa.Column:
        """The key column by exact name, else by a unique case-insensitive match."""
        if key_column in target.c:
            return target.c[key_column]
        folded = [c for c in target.c if c.key.casefold() == key_column.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise SqlDataError(
            f"key column {key_column!r} is not a column of {_qualified(table, schema)} "
            f"(columns: {', '.join(target.c.keys())})"
        )

    @staticmethod
    def _match_columns(
        target: sa.Table, frame: pl.DataFrame, table: str, schema: str | None
    ) -> dict[str, str]:
        """Map each frame column to a table column (exact name, else case-insensitive)."""
        by_fold: dict[str, list[str]] = {}
        for col in target.c:
            by_fold.setdefault(col.key.casefold(), []).append(col.key)
        names: dict[str, str] = {}
        extra: list[str] = []
        for name in frame.columns:
            if name in target.c:
                names[name] = name
            elif len(by_fold.get(name.casefold(), [])) == 1:
                names[name] = by_fold[name.casefold()][0]
            else:
                extra.append(name)
        if extra:
            raise SqlDataError(
                f"the frame has columns that {_qualified(table, schema)} lacks: "
                f"{', '.join(extra)} (table columns: {', '.join(target.c.keys())})"
            )
        covered = set(names.values())
        missing = [
            col.key
            for col in target.c
            if col.key not in covered and not col.nullable and not _has_default(target, col)
        ]
        if missing:
            raise SqlDataError(
                f"the frame lacks NOT NULL columns of {_qualified(table, schema)} that have no "
                f"default: {', '.join(missing)}"
            )
        return names

    @staticmethod
    def _check_window(
        frame: pl.DataFrame,
        rows: Sequence[tuple],
        names: dict[str, str],
        key_column: str,
        start: Any,
        end: Any,
    ) -> None:
        position = next((i for i, c in enumerate(frame.columns) if names[c] == key_column), None)
        if position is None:
            if rows:
                raise SqlDataError(f"the frame has no key column {key_column!r}")
            return
        try:
            outside = [
                row[position]
                for row in rows
                if row[position] is None or not start <= row[position] < end
            ]
        except TypeError as exc:
            raise SqlDataError(
                f"cannot compare {key_column!r} values with the window bounds "
                f"{start!r}..{end!r}: {exc}"
            ) from None
        if outside:
            raise SqlDataError(
                f"{len(outside)} frame rows have {key_column} outside [{start}, {end}) "
                f"(first: {outside[0]!r}); a re-run of the window could not replace them"
            )

    def count_rows(
        self,
        table: str,
        *,
        key_column: str | None = None,
        start: Any = None,
        end: Any = None,
        schema: str | None = None,
    ) -> int:
        """Rows in ``table``, optionally only those with ``start <= key_column < end``."""
        if key_column is None and (start is not None or end is not None):
            raise ValueError("count_rows: start/end need a key_column")
        with self._connect() as conn:
            target = self._reflect(conn, table, schema)
            stmt = sa.select(sa.func.count()).select_from(target)
            if key_column is not None:
                if key_column not in target.c:
                    raise SqlDataError(
                        f"key column {key_column!r} is not a column of {_qualified(table, schema)}"
                    )
                key = target.c[key_column]
                if start is not None:
                    stmt = stmt.where(key >= _bound(start, key))
                if end is not None:
                    stmt = stmt.where(key < _bound(end, key))
            return int(conn.execute(stmt).scalar_one())
