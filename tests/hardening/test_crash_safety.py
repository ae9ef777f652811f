"""Crash safety (issue #8, point 3): a write cut off part-way leaves the previous contents.

Every store is written by the platform's own writer in a real materialization. The fault is
injected *after part of the data has gone out*: rows inserted inside the open transaction,
bytes on disk in the file being written, bytes of the request body sent over HTTP. One test
really kills the process (SIGKILL) in the middle of a DuckDB write. After each fault the
previous contents must be intact, nothing partial or temporary visible, and a re-run without
the fault must complete with the rows present once.
"""

import errno
import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import boto3
import dagster as dg
import duckdb
import polars as pl
import pytest
import sqlalchemy as sa
from botocore.awsrequest import AWSConnection
from dagster_duckdb_polars import DuckDBPolarsTypeHandler

import resources.object_store as object_store_module
from esios_assets.assets import (
    SQL_TABLE,
    csv_path,
    demand_forecast_esios,
    esios_demand_forecast,
    esios_demand_forecast_csv,
)
from esios_assets.sql_setup import create_demand_forecast_table
from esios_assets.transform import expected_hours, month_bounds_utc
from resources.object_store import ObjectStore, object_io_manager_from
from resources.settings import load_settings
from resources.sql import SqlDatabase
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAW_PAYLOAD_PREFIX, rain_forecasts

REPO = Path(__file__).resolve().parents[2]
JAN, FEB = date(2017, 1, 1), date(2017, 2, 1)
JAN_FEB = {
    "dagster/asset_partition_range_start": "2017-01-01",
    "dagster/asset_partition_range_end": "2017-02-01",
}


class SimulatedCrash(dg.Failure):
    """The injected fault: stands for the process dying at that point of the write.

    A ``dg.Failure`` that bypasses step retry policies: the ESIOS extract retries 3 times with
    10 s+ delays (which ``dg.materialize`` does not let run config turn off), and the fault
    would strike every attempt.
    """

    def __init__(self, description: str):
        super().__init__(description=description, allow_retries=False)


def failure_text(result: dg.ExecuteInProcessResult, node: str) -> str:
    """The failed step's error and every cause, as one text."""
    error, parts = result.failure_data_for_node(node).error, []
    while error is not None:
        parts.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    return "\n".join(parts)


def recent_minute(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime(MINUTE_FORMAT)


def files_under(root: Path) -> list[str]:
    """Every file below ``root``, hidden ones (temp files) included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- DuckDB warehouse


@contextmanager
def insert_half_then_crash(monkeypatch, seen: list[int]) -> Iterator[None]:
    """The IO manager deletes the partition, inserts the first half of the frame, then dies.

    ``seen`` gets the partition's row count *inside* the transaction at the moment of the crash:
    half the frame, which proves the DELETE ran and part of the INSERT landed.
    """
    insert = DuckDBPolarsTypeHandler.handle_output

    def half_then_crash(self, context, table_slice, obj, connection):
        insert(self, context, table_slice, obj.head(obj.height // 2), connection)
        (dimension,) = table_slice.partition_dimensions
        start, end = dimension.partitions
        seen.append(
            connection.execute(
                f"select count(*) from {table_slice.schema}.{table_slice.table} "
                f"where {dimension.partition_expr} >= ? and {dimension.partition_expr} < ?",
                [start.replace(tzinfo=None), end.replace(tzinfo=None)],
            ).fetchone()[0]
        )
        raise SimulatedCrash(f"killed after inserting {obj.height // 2} of {obj.height} rows")

    with monkeypatch.context() as patch:
        patch.setattr(DuckDBPolarsTypeHandler, "handle_output", half_then_crash)
        yield


def esios_table(database: str) -> pl.DataFrame:
    with duckdb.connect(database, read_only=True) as conn:
        return conn.execute("select * from esios.esios_demand_forecast order by datetime_utc").pl()


def test_warehouse_write_cut_after_half_the_rows_keeps_every_partition(
    platform_resources, instance, monkeypatch
):
    database = platform_resources["warehouse"].database
    assert dg.materialize(
        [esios_demand_forecast], resources=platform_resources, instance=instance, tags=JAN_FEB
    ).success
    fresh = esios_table(database)
    # Mark January's stored values so "previous contents" differs from what a re-run writes.
    with duckdb.connect(database) as conn:
        conn.execute(
            "update esios.esios_demand_forecast set demand_forecast = demand_forecast + 0.5 "
            "where datetime_local < '2017-02-01'"
        )
    before = esios_table(database)

    seen: list[int] = []
    with insert_half_then_crash(monkeypatch, seen):
        result = dg.materialize(
            [esios_demand_forecast],
            resources=platform_resources,
            instance=instance,
            partition_key="2017-01-01",
            raise_on_error=False,
        )
    assert not result.success
    assert "SimulatedCrash" in failure_text(result, "esios_demand_forecast")
    assert seen == [expected_hours(JAN) // 2], "the crash must strike after a partial insert"
    # Read at once, in this process: the failed write must also have let go of the file.
    assert esios_table(database).equals(before), "January and February must be as before"

    assert dg.materialize(
        [esios_demand_forecast],
        resources=platform_resources,
        instance=instance,
        partition_key="2017-01-01",
    ).success
    after = esios_table(database)
    assert after.equals(fresh), "the re-run writes January once, February is untouched"
    assert (
        after["datetime_utc"].n_unique()
        == after.height
        == expected_hours(JAN) + expected_hours(FEB)
    )


# The run the test kills: rain_forecasts for one minute, with the IO manager stalled after it
# has deleted the minute and inserted half of its rows (inside the open transaction).
KILLED_RUN = """
import sys, time
from pathlib import Path

import dagster as dg
from dagster_duckdb_polars import DuckDBPolarsTypeHandler

from definitions import build_resources
from resources.settings import load_settings
from weather_assets.rain.assets import rain_forecasts

marker, partition = Path(sys.argv[1]), sys.argv[2]
insert = DuckDBPolarsTypeHandler.handle_output


def insert_half_then_stall(self, context, table_slice, obj, connection):
    insert(self, context, table_slice, obj.head(obj.height // 2), connection)
    rows = connection.execute(
        "select count(*) from weather.rain_forecasts "
        "where strftime(fetched_minute, '%Y-%m-%d-%H:%M') = ?",
        [partition],
    ).fetchone()[0]
    marker.with_suffix(".tmp").write_text(str(rows))
    marker.with_suffix(".tmp").replace(marker)
    time.sleep(600)


DuckDBPolarsTypeHandler.handle_output = insert_half_then_stall
dg.materialize([rain_forecasts], resources=build_resources(load_settings()), partition_key=partition)
"""


def rain_rows(database: str) -> list[tuple]:
    with duckdb.connect(database, read_only=True) as conn:
        return conn.execute(
            "select * from weather.rain_forecasts order by fetched_minute, location_id, forecast_at"
        ).fetchall()


def test_warehouse_survives_sigkill_in_the_middle_of_a_write(
    platform_resources, platform_env, instance
):
    database = platform_resources["warehouse"].database
    killed, other = recent_minute(6), recent_minute(7)
    for key in (killed, other):
        assert dg.materialize(
            [rain_forecasts], resources=platform_resources, instance=instance, partition_key=key
        ).success
    fresh = rain_rows(database)
    killed_minute = datetime.strptime(killed, MINUTE_FORMAT)
    with duckdb.connect(database) as conn:
        conn.execute(
            "update weather.rain_forecasts set precipitation_mm_per_h = "
            "precipitation_mm_per_h + 100 where fetched_minute = ?",
            [killed_minute],
        )
    before = rain_rows(database)
    rows_of_killed = sum(1 for row in before if row[3] == killed_minute)

    marker, log = platform_env / "stalled", platform_env / "killed_run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, str(marker), killed],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
            while not marker.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the run never reached the write:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert int(marker.read_text()) == rows_of_killed // 2, "killed after a partial insert"

    assert rain_rows(database) == before, "DuckDB must drop the uncommitted transaction"
    assert dg.materialize(
        [rain_forecasts], resources=platform_resources, instance=instance, partition_key=killed
    ).success
    assert rain_rows(database) == fresh, "the re-run writes the minute once"


# ---------------------------------------------------------------------------- SQL target


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def sql_target(request, tmp_path) -> Iterator[SqlDatabase]:
    """The ESIOS target table, created empty, on SQLite or in a scratch PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'target.sqlite'}"
        admin = sa.create_engine(url)
        create_demand_forecast_table(admin)
        admin.dispose()
        database = SqlDatabase(url=url)
        yield database
        database.engine().dispose()
        return
    url = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("postgres_schema")
    admin = sa.create_engine(url)
    create_demand_forecast_table(admin, schema=schema)
    admin.dispose()
    # The asset loads the unqualified table: the search path points it at the scratch schema.
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    database = SqlDatabase(url=scoped.render_as_string(hide_password=False))
    yield database
    database.engine().dispose()


@contextmanager
def crash_after_first_batch(seen: list[int]) -> Iterator[None]:
    """Every engine: after the first INSERT batch into the target reaches the database, record
    the table's row count inside the transaction, then die."""

    def after_execute(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(f"INSERT INTO {SQL_TABLE.upper()}"):
            return
        probe = cursor.connection.cursor()
        probe.execute(f"select count(*) from {SQL_TABLE}")
        seen.append(probe.fetchone()[0])
        probe.close()
        raise SimulatedCrash("killed after the first INSERT batch")

    sa.event.listen(sa.Engine, "after_cursor_execute", after_execute)
    try:
        yield
    finally:
        sa.event.remove(sa.Engine, "after_cursor_execute", after_execute)


def sql_rows(database: SqlDatabase) -> list[tuple]:
    with database.engine().connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "select name, id, datetime, demand_forecast, update_timestamp, datetime_utc "
                    f"from {SQL_TABLE} order by datetime_utc"
                )
            )
        ]


def test_sql_load_cut_after_the_first_batch_keeps_the_month(
    platform_resources, instance, sql_target
):
    resources = {**platform_resources, "sql_database": sql_target}
    assets = [esios_demand_forecast, demand_forecast_esios]
    assert dg.materialize(assets, resources=resources, instance=instance, tags=JAN_FEB).success
    fresh = sql_rows(sql_target)
    start, end = (t.replace(tzinfo=None) for t in month_bounds_utc(JAN))
    with sql_target.engine().begin() as conn:
        conn.execute(
            sa.text(
                f"update {SQL_TABLE} set demand_forecast = demand_forecast + 0.5 "
                "where datetime_utc >= :start and datetime_utc < :end"
            ),
            {"start": start, "end": end},
        )
    before = sql_rows(sql_target)

    batch = 100
    seen: list[int] = []
    small_batches = SqlDatabase(url=sql_target.url, batch_size=batch)
    with crash_after_first_batch(seen):
        result = dg.materialize(
            assets,
            selection=[demand_forecast_esios],
            resources={**resources, "sql_database": small_batches},
            instance=instance,
            partition_key="2017-01-01",
            raise_on_error=False,
        )
    assert not result.success
    assert "SimulatedCrash" in failure_text(result, "demand_forecast_esios")
    # Inside the transaction: February, plus one batch of January (its old rows deleted).
    assert seen == [expected_hours(FEB) + batch]
    assert sql_rows(sql_target) == before, "January and February must be as before"

    assert dg.materialize(
        assets,
        selection=[demand_forecast_esios],
        resources=resources,
        instance=instance,
        partition_key="2017-01-01",
    ).success
    after = sql_rows(sql_target)
    assert after == fresh, "the re-run loads January once, February is untouched"
    assert len({row[5] for row in after}) == len(after)


# ---------------------------------------------------------------------------- object store


@contextmanager
def disk_full_mid_object(monkeypatch, written: list[int]) -> Iterator[None]:
    """The object store's file writes put half the bytes on disk, then fail as a full disk does.

    Only ``resources/object_store.py`` sees the faulty ``os``; ``written`` gets the bytes that
    reached the file before the failure.
    """

    class HalfWritten:
        def __init__(self, handle):
            self._handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self._handle.close()

        def write(self, data):
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
            written.append(os.fstat(self._handle.fileno()).st_size)
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

    class DiskFullOs:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, *args, **kwargs):
            return HalfWritten(os.fdopen(fd, *args, **kwargs))

    with monkeypatch.context() as patch:
        patch.setattr(object_store_module, "os", DiskFullOs())
        yield


@contextmanager
def connection_dies_mid_put(monkeypatch, key: str, sent: list[int]) -> Iterator[None]:
    """An S3 PUT of ``key`` sends its headers and the first KiB of its body, then the client dies
    (on every attempt): the server sees a body shorter than its Content-Length.

    ``sent`` gets the body bytes that went out before each cut.
    """
    body_budget = 1024
    request, send = AWSConnection.request, AWSConnection.send

    def armed_request(self, method, url, *args, **kwargs):
        aimed = method == "PUT" and url.split("?")[0].endswith(key)
        self._crash_room = body_budget if aimed else None
        return request(self, method, url, *args, **kwargs)

    def cut_send(self, data):
        room = getattr(self, "_crash_room", None)
        if room is None:
            return send(self, data)
        data = bytes(data)
        # The request line and headers are free; only body bytes count against the budget.
        head = data.index(b"\r\n\r\n") + 4 if data.startswith(b"PUT ") else 0
        if len(data) - head <= room:
            self._crash_room = room - (len(data) - head)
            return send(self, data)
        send(self, data[: head + room])
        sent.append(body_budget)
        raise SimulatedCrash(f"connection lost after {body_budget} bytes of the PUT body")

    with monkeypatch.context() as patch:
        patch.setattr(AWSConnection, "request", armed_request)
        patch.setattr(AWSConnection, "send", cut_send)
        yield


def s3_state(endpoint: str, bucket: str) -> tuple[list[str], list]:
    """Every key in the bucket, and any multipart upload left open."""
    client = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return sorted(keys), client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request, platform_resources) -> ObjectStore:
    """The platform's object store: the local folder, or a bucket on the moto S3 server."""
    if request.param == "local":
        return platform_resources["object_store"]
    return ObjectStore(
        bucket=request.getfixturevalue("s3_bucket"),
        prefix="dagster",
        endpoint_url=request.getfixturevalue("moto_server"),
    )


def stored_keys(store: ObjectStore) -> list[str]:
    """Everything stored, temp files and open multipart uploads included."""
    if store.is_s3:
        keys, uploads = s3_state(store.endpoint_url, store.bucket)
        assert uploads == [], "a multipart upload was left open"
        return keys
    return files_under(Path(store.local_dir))


def object_write_dies(store: ObjectStore, monkeypatch, key: str, cut: list[int]):
    if store.is_s3:
        return connection_dies_mid_put(monkeypatch, key, cut)
    return disk_full_mid_object(monkeypatch, cut)


def test_raw_payload_archive_cut_mid_object_keeps_the_previous_object(
    platform_resources, instance, monkeypatch, store
):
    resources = {**platform_resources, "object_store": store}
    partition = recent_minute(5)
    minute = datetime.strptime(partition, MINUTE_FORMAT)
    key = store.key(RAW_PAYLOAD_PREFIX, f"{minute:%Y-%m-%d}", f"{minute:%H-%M}.jsonl.gz")

    def run(**kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [rain_forecasts],
            resources=resources,
            instance=instance,
            partition_key=partition,
            **kwargs,
        )

    assert run().success
    fresh = store.get_bytes(key)
    previous = gzip.compress(b'{"previous": "archive"}')
    store.put_bytes(key, previous)

    cut: list[int] = []
    with object_write_dies(store, monkeypatch, key, cut):
        result = run(raise_on_error=False)
    assert not result.success
    assert cut and 0 < cut[0] < len(fresh), "the write must die after part of the object"
    assert store.get_bytes(key) == previous
    assert stored_keys(store) == [key], "no partial or temporary object may be left"

    assert run().success
    rewritten = gzip.decompress(store.get_bytes(key))  # (gzip headers carry the write time)
    assert rewritten == gzip.decompress(fresh)
    assert stored_keys(store) == [key]
    lines = rewritten.decode().splitlines()
    assert len(lines) == len(resources["coordinates"].load())
    assert all("payload" in json.loads(line) for line in lines)


class ModelConfig(dg.Config):
    version: int
    unpicklable_tail: bool = False
    watch_dir: str = ""


class Unpicklable:
    """Fails when pickled; before failing it notes the size of every file in ``watch_dir``."""

    seen: ClassVar[list[dict[str, int]]] = []

    def __init__(self, watch_dir: str):
        self.watch_dir = watch_dir

    def __reduce__(self):
        Unpicklable.seen.append({p.name: p.stat().st_size for p in Path(self.watch_dir).iterdir()})
        raise pickle.PicklingError("this attribute cannot be pickled (injected)")


WEIGHTS = 256 * 1024


@dg.asset(io_manager_key="object_io_manager")
def crash_model(config: ModelConfig) -> dict:
    """A model whose pickle is large (version 2) or small (version 1)."""
    size = WEIGHTS if config.version > 1 else 1024
    model: dict = {"version": config.version, "weights": bytes(range(256)) * (size // 256)}
    if config.unpicklable_tail:
        model["tail"] = Unpicklable(config.watch_dir)
    return model


def test_object_io_manager_cut_mid_pickle_keeps_the_previous_model(
    platform_env, instance, monkeypatch, store
):
    settings = load_settings().model_copy(
        update={
            "s3_bucket": store.bucket,
            "s3_prefix": "dagster",
            "s3_endpoint_url": store.endpoint_url,
        }
    )
    resources = {"object_io_manager": object_io_manager_from(settings)}
    key = "dagster/crash_model"
    model_dir = settings.objects_dir / "dagster"

    def run(version: int, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [crash_model],
            resources=resources,
            instance=instance,
            run_config={"ops": {"crash_model": {"config": {"version": version, **kwargs}}}},
            raise_on_error=False,
        )

    def stored_version() -> int:
        return pickle.loads(store.get_bytes(key))["version"]

    assert run(1).success
    previous = store.get_bytes(key)
    if store.is_s3:
        cut: list[int] = []
        with connection_dies_mid_put(monkeypatch, key, cut):
            result = run(2)
        assert cut, "the PUT must die after part of its body"
    else:
        Unpicklable.seen.clear()
        result = run(2, unpicklable_tail=True, watch_dir=str(model_dir))
        (sizes,) = Unpicklable.seen
        assert max(sizes.values()) >= WEIGHTS, "the new weights must be on disk when it fails"
    assert not result.success
    assert store.get_bytes(key) == previous
    assert stored_keys(store) == [key], "no partial or temporary object may be left"
    assert stored_version() == 1

    assert run(2).success
    assert stored_version() == 2
    assert stored_keys(store) == [key]


def test_esios_csv_cut_mid_file_keeps_the_previous_file(platform_resources, instance, monkeypatch):
    def run(selection, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [esios_demand_forecast, esios_demand_forecast_csv],
            selection=selection,
            resources=platform_resources,
            instance=instance,
            **kwargs,
        )

    assert run([esios_demand_forecast], partition_key="2017-01-01").success
    assert run([esios_demand_forecast_csv]).success
    previous = csv_path().read_bytes()
    assert run([esios_demand_forecast], partition_key="2017-02-01").success

    written: list[int] = []
    write_csv = pl.DataFrame.write_csv

    def half_then_disk_full(self, file=None, *args, **kwargs):
        write_csv(self.head(self.height // 2), file, *args, **kwargs)
        written.append(Path(file).stat().st_size)
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    with monkeypatch.context() as patch:
        patch.setattr(pl.DataFrame, "write_csv", half_then_disk_full)
        result = run([esios_demand_forecast_csv], raise_on_error=False)
    assert not result.success
    assert "No space left on device" in failure_text(result, "esios_demand_forecast_csv")
    assert written and written[0] > len(previous) // 2, "half the new file was on disk"
    assert csv_path().read_bytes() == previous
    assert files_under(csv_path().parent) == [csv_path().name], "no temp file may be left"

    assert run([esios_demand_forecast_csv]).success
    csv = pl.read_csv(csv_path(), infer_schema=False)
    assert csv.height == expected_hours(JAN) + expected_hours(FEB)
    assert csv["datetime"].n_unique() == csv.height
