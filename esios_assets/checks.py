"""Data-quality checks of the ESIOS ETL: complete hours, no duplicates, plausible values, the
schema consumers rely on, and that the SQL table and the CSV match the warehouse."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from esios_assets.assets import (
    PLAUSIBLE_MW,
    SQL_TABLE,
    csv_path,
    demand_forecast_esios,
    esios_demand_forecast,
    esios_demand_forecast_csv,
)
from esios_assets.partitions import months_of
from esios_assets.transform import (
    EXPORT_COLUMNS,
    expected_hours,
    month_bounds_utc,
    published_end_utc,
)
from resources import clock
from resources.sql import SqlDatabase
from resources.warehouse import DUCKDB_POOL, table_exists


def _partition_frame(context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource):
    """The checked months' rows (the run's partitions, or everything when run alone)."""
    op_context = context.op_execution_context
    with warehouse.get_connection() as conn:
        if not table_exists(conn, "esios", "esios_demand_forecast"):
            return None, []
        frame = conn.execute("select * from esios.esios_demand_forecast").pl()
    if op_context.has_partition_key or op_context.has_partition_key_range:
        months = months_of(op_context)
    else:
        months = sorted({d.replace(day=1) for d in frame["datetime_local"].dt.date().to_list()})
    start, end = month_bounds_utc(months[0])[0], month_bounds_utc(months[-1])[1]
    return frame.filter((pl.col("datetime_utc") >= start) & (pl.col("datetime_utc") < end)), months


@dg.asset_check(asset=esios_demand_forecast, blocking=True, pool=DUCKDB_POOL)
def esios_hours_complete(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Every local hour of each month is there: 743 in March, 745 in October (DST), else 24/day;
    for the month in progress, every hour up to the end of today (later ones may be out too)."""
    frame, months = _partition_frame(context, warehouse)
    if frame is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "table missing"})
    wrong = []
    now = clock.utcnow()
    for month in months:
        start, end = month_bounds_utc(month)
        due = published_end_utc(month, now)
        in_month = frame.filter((pl.col("datetime_utc") >= start) & (pl.col("datetime_utc") < end))
        got = in_month["datetime_utc"].n_unique()
        hours = pl.datetime_range(start, due, "1h", closed="left", eager=True).to_list()
        missing = sorted(set(hours) - set(in_month["datetime_utc"].to_list()))
        expected = expected_hours(month) if due == end else len(hours)
        if missing or (due == end and got != expected):
            shown = ", ".join(f"{h:%Y-%m-%d %H:%M}" for h in missing[:12])
            more = f" (+{len(missing) - 12} more)" if len(missing) > 12 else ""
            gaps = f", missing UTC {shown}{more}" if missing else ""
            wrong.append(f"{month:%Y-%m}: {got}/{expected}{gaps}")
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


ESIOS_CHECKS = [
    esios_hours_complete,
    esios_no_duplicate_hours,
    esios_values_plausible,
    esios_schema,
    demand_forecast_esios_matches_warehouse,
    esios_csv_matches_warehouse,
]
