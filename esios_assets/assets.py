"""Dagster wiring of the ESIOS indicator 460 ETL: extract by month, CSV export, SQL load, checks.

Monthly partitions are Spanish local months (Europe/Madrid), because that is how Spain
publishes the forecast; the warehouse keeps the UTC instant of every hour, which is what makes
the two 02:00 rows of the autumn DST day distinct.
"""

import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from esios_assets.transform import (
    EXPORT_COLUMNS,
    demand_forecast_frame,
    expected_hours,
    export_frame,
    month_bounds_utc,
)
from resources.esios import EsiosResource
from resources.http import ApiAuthError
from resources.settings import load_settings
from resources.sql import SqlDatabase
from resources.warehouse import DUCKDB_POOL, table_exists

MONTHLY = dg.MonthlyPartitionsDefinition(start_date="2017-01-01", timezone="Europe/Madrid")
SQL_TABLE = "demand_forecast_esios"
# Peninsular demand has stayed within ~18-45 GW; outside this a value is a unit or feed error.
PLAUSIBLE_MW = (15_000.0, 50_000.0)

_COLUMNS = [
    dg.TableColumn("name", "VARCHAR", description="Indicator name as ESIOS publishes it."),
    dg.TableColumn("id", "BIGINT", description="Indicator id (460)."),
    dg.TableColumn(
        "datetime", "VARCHAR", description="Local wall time in Spain, yyyy-mm-dd HH:MM:SS."
    ),
    dg.TableColumn("demand_forecast", "DOUBLE", description="Forecast peninsular demand, MW."),
    dg.TableColumn(
        "update_timestamp", "VARCHAR", description="values_updated_at, local wall time."
    ),
]
_WAREHOUSE_COLUMNS = [
    *_COLUMNS,
    dg.TableColumn(
        "datetime_utc", "TIMESTAMP", description="The UTC instant of the hour (unique)."
    ),
    dg.TableColumn(
        "utc_offset_minutes", "INTEGER", description="Spain's UTC offset then (60/120)."
    ),
    dg.TableColumn(
        "datetime_local", "TIMESTAMP", description="Local wall time (partition column)."
    ),
]


def _months(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[date]:
    """The run's months, from its partition keys (a checks-only run has no time window)."""
    keys = context.partition_key_range
    months, current = [], date.fromisoformat(keys.start)
    while current <= date.fromisoformat(keys.end):
        months.append(current)
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


@dg.asset(
    group_name="esios",
    kinds={"python", "polars", "duckdb"},
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL),
    # A month is published daily; one not refreshed for 35 days means the monthly run stopped.
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(days=35), warn_window=timedelta(days=32)
    ),
    metadata={
        "schema": "esios",
        "partition_expr": "datetime_local",
        "dagster/column_schema": dg.TableSchema(columns=_WAREHOUSE_COLUMNS),
    },
)
def esios_demand_forecast(context: dg.AssetExecutionContext, esios: EsiosResource) -> pl.DataFrame:
    """ESIOS indicator 460, the hourly day-ahead forecast of peninsular demand (MW), one
    request per Spanish month, with the UTC instant and offset of every hour."""
    frames = []
    for month in _months(context):
        try:
            payload = esios.fetch_month(month)
        except ApiAuthError as exc:
            # A rejected token stays rejected: the step's retry policy would only wait for it.
            raise dg.Failure(str(exc), allow_retries=False) from None
        frame = demand_forecast_frame(payload)
        context.log.info(f"{month:%Y-%m}: {frame.height} hours (expected {expected_hours(month)})")
        frames.append(frame)
    forecast = pl.concat(frames).with_columns(
        pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S").alias("datetime_local")
    )
    context.add_output_metadata(
        {
            "source": esios.source_mode,
            "months": len(frames),
            "dagster/row_count": forecast.height,
            "first_hour_utc": str(forecast["datetime_utc"].min()),
            "last_hour_utc": str(forecast["datetime_utc"].max()),
        }
    )
    return forecast


@dg.asset(
    group_name="esios",
    kinds={"python", "sql"},
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    metadata={"dagster/column_schema": dg.TableSchema(columns=_COLUMNS)},
)
def demand_forecast_esios(
    context: dg.AssetExecutionContext,
    esios_demand_forecast: pl.DataFrame,
    sql_database: SqlDatabase,
) -> dg.MaterializeResult:
    """The forecast loaded into the existing SQL table demand_forecast_esios (SQL Server in the
    brief; any SQLAlchemy database), month by month: delete the month, insert, one transaction."""
    loaded = 0
    for month in _months(context):
        start, end = month_bounds_utc(month)
        rows = esios_demand_forecast.filter(
            (pl.col("datetime_utc") >= start) & (pl.col("datetime_utc") < end)
        ).select(*EXPORT_COLUMNS, "datetime_utc")
        loaded += sql_database.replace_rows(
            SQL_TABLE, rows, key_column="datetime_utc", start=start, end=end
        )
    return dg.MaterializeResult(
        metadata={"dagster/row_count": loaded, "table": SQL_TABLE, "months": len(_months(context))}
    )


@dg.asset(
    group_name="esios",
    kinds={"python", "csv"},
    deps=[esios_demand_forecast],
    pool=DUCKDB_POOL,
    metadata={"dagster/column_schema": dg.TableSchema(columns=_COLUMNS)},
)
def esios_demand_forecast_csv(warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Every materialized month as one CSV ($DATA_DIR/esios/demand_forecast_esios.csv), exactly
    the brief's five columns, ordered by time; written atomically (a reader never sees half)."""
    with warehouse.get_connection() as conn:
        frame = conn.execute("select * from esios.esios_demand_forecast order by datetime_utc").pl()
    path = csv_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        export_frame(frame).write_csv(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dg.MaterializeResult(metadata={"dagster/row_count": frame.height, "path": str(path)})


def csv_path() -> Path:
    return load_settings().data_dir / "esios" / "demand_forecast_esios.csv"


def _partition_frame(context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource):
    """The checked months' rows (the run's partitions, or everything when run alone)."""
    op_context = context.op_execution_context
    with warehouse.get_connection() as conn:
        if not table_exists(conn, "esios", "esios_demand_forecast"):
            return None, []
        frame = conn.execute("select * from esios.esios_demand_forecast").pl()
    if op_context.has_partition_key or op_context.has_partition_key_range:
        months = _months(op_context)
    else:
        months = sorted({d.replace(day=1) for d in frame["datetime_local"].dt.date().to_list()})
    start, end = month_bounds_utc(months[0])[0], month_bounds_utc(months[-1])[1]
    return frame.filter((pl.col("datetime_utc") >= start) & (pl.col("datetime_utc") < end)), months


@dg.asset_check(asset=esios_demand_forecast, blocking=True, pool=DUCKDB_POOL)
def esios_hours_complete(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Every local hour of each month is there: 743 in March, 745 in October (DST), else 24/day."""
    frame, months = _partition_frame(context, warehouse)
    if frame is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "table missing"})
    wrong = []
    for month in months:
        start, end = month_bounds_utc(month)
        in_month = frame.filter((pl.col("datetime_utc") >= start) & (pl.col("datetime_utc") < end))
        got = in_month["datetime_utc"].n_unique()
        if got != expected_hours(month):
            hours = pl.datetime_range(start, end, "1h", closed="left", eager=True).to_list()
            missing = sorted(set(hours) - set(in_month["datetime_utc"].to_list()))
            shown = ", ".join(f"{h:%Y-%m-%d %H:%M}" for h in missing[:12])
            more = f" (+{len(missing) - 12} more)" if len(missing) > 12 else ""
            gaps = f", missing UTC {shown}{more}" if missing else ""
            wrong.append(f"{month:%Y-%m}: {got}/{expected_hours(month)}{gaps}")
    return dg.AssetCheckResult(
        passed=not wrong,
        metadata={"months_checked": len(months), "incomplete": ", ".join(wrong) or "none"},
    )


@dg.asset_check(asset=esios_demand_forecast, blocking=True, pool=DUCKDB_POOL)
def esios_no_duplicate_hours(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """One value per UTC instant (local wall times legitimately repeat once a year)."""
    frame, _ = _partition_frame(context, warehouse)
    dupes = 0 if frame is None else frame.height - frame["datetime_utc"].n_unique()
    return dg.AssetCheckResult(
        passed=frame is not None and dupes == 0, metadata={"duplicates": dupes}
    )


@dg.asset_check(asset=esios_demand_forecast, blocking=True, pool=DUCKDB_POOL)
def esios_values_plausible(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Forecast demand within 15-50 GW and never null."""
    frame, _ = _partition_frame(context, warehouse)
    if frame is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "table missing"})
    low, high = PLAUSIBLE_MW
    bad = frame.filter(
        pl.col("demand_forecast").is_null() | ~pl.col("demand_forecast").is_between(low, high)
    )
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        metadata={
            "implausible_values": bad.height,
            "min_mw": dg.MetadataValue.float(float(frame["demand_forecast"].min() or 0)),
            "max_mw": dg.MetadataValue.float(float(frame["demand_forecast"].max() or 0)),
        },
    )


@dg.asset_check(asset=esios_demand_forecast, blocking=True, pool=DUCKDB_POOL)
def esios_schema(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    """The stored columns and types are what the CSV and SQL exports rely on."""
    expected = {
        "name": "VARCHAR",
        "id": "BIGINT",
        "datetime": "VARCHAR",
        "demand_forecast": "DOUBLE",
        "update_timestamp": "VARCHAR",
        "datetime_utc": "TIMESTAMP",
    }
    with warehouse.get_connection() as conn:
        found = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'esios' and table_name = 'esios_demand_forecast'"
            ).fetchall()
        )
    wrong = {c: found.get(c, "missing") for c, t in expected.items() if found.get(c) != t}
    return dg.AssetCheckResult(
        passed=not wrong,
        metadata={"mismatches": ", ".join(f"{c}: {t}" for c, t in wrong.items()) or "none"},
    )


@dg.asset_check(asset=demand_forecast_esios, blocking=True, pool=DUCKDB_POOL)
def demand_forecast_esios_matches_warehouse(
    warehouse: DuckDBResource, sql_database: SqlDatabase
) -> dg.AssetCheckResult:
    """The SQL table holds exactly the warehouse's rows (nothing lost or duplicated in the load)."""
    with warehouse.get_connection() as conn:
        expected = conn.execute("select count(*) from esios.esios_demand_forecast").fetchone()[0]
    loaded = sql_database.count_rows(SQL_TABLE)
    return dg.AssetCheckResult(
        passed=loaded == expected, metadata={"sql_rows": loaded, "warehouse_rows": expected}
    )


@dg.asset_check(asset=esios_demand_forecast_csv, blocking=True, pool=DUCKDB_POOL)
def esios_csv_matches_warehouse(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    """The CSV has the brief's columns, in order, and one line per warehouse row."""
    with warehouse.get_connection() as conn:
        expected = conn.execute("select count(*) from esios.esios_demand_forecast").fetchone()[0]
    path = csv_path()
    frame = pl.read_csv(path, infer_schema=False) if path.exists() else pl.DataFrame()
    return dg.AssetCheckResult(
        passed=tuple(frame.columns) == EXPORT_COLUMNS and frame.height == expected,
        metadata={
            "csv_rows": frame.height,
            "warehouse_rows": expected,
            "columns": ", ".join(frame.columns),
        },
    )


ESIOS_ASSETS = [esios_demand_forecast, demand_forecast_esios, esios_demand_forecast_csv]
ESIOS_CHECKS = [
    esios_hours_complete,
    esios_no_duplicate_hours,
    esios_values_plausible,
    esios_schema,
    demand_forecast_esios_matches_warehouse,
    esios_csv_matches_warehouse,
]
