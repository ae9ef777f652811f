"""DuckDB warehouse access: the IO manager assets write through, and read-only connections.

DuckDB allows one writing process per file. Writers are serialised by the ``duckdb`` Dagster
pool (limit 1) and, as a second line of defence, by dagster-duckdb's connection retry on the
file lock (10 attempts, not logged).
Readers (checks, scripts, the web service) open read-only connections with their own retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb.io_manager import DbIOManager, DuckDbClient
from dagster_duckdb_polars import DuckDBPolarsIOManager

DUCKDB_POOL = "duckdb"


class _TransactionalDuckDbClient(DuckDbClient):
    """Runs the IO manager's delete-partition + insert in one transaction.

    The stock client autocommits each statement, so a run killed between the DELETE and the
    INSERT would leave the partition empty; here it leaves the previous rows intact.
    A failed write also closes its connection: the stock client closes only on success, so the
    file stayed open (and locked) until garbage collection, and this process could not open it
    again with another configuration (read-only, or the ``warehouse`` resource's).
    """

    @staticmethod
    @contextmanager
    def connect(context, table_slice):
        Path(context.resource_config["database"]).parent.mkdir(parents=True, exist_ok=True)
        with DuckDbClient.connect(context, table_slice) as conn:
            conn.begin()
            try:
                yield conn
            except BaseException:
                try:
                    conn.rollback()
                finally:
                    conn.close()
                raise
            conn.commit()


class WarehouseIOManager(DuckDBPolarsIOManager):
    """``DuckDBPolarsIOManager`` whose writes are atomic per partition."""

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=_TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists (asked of the catalog, so no name is guessed)."""
    found = conn.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()[0]
    return bool(found)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "being used" in text


@contextmanager
def read_only_connection(
    path: str | Path, *, attempts: int = 20, delay_s: float = 0.25
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, retried while a writer holds the file lock."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: materialize an asset first")
    for attempt in range(1, attempts + 1):
        try:
            conn = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException as exc:
            if attempt == attempts or not _is_lock_error(exc):
                raise
            time.sleep(min(delay_s * attempt, 2.0))
    try:
        yield conn
    finally:
        conn.close()
