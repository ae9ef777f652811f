"""Dagster wiring of the ESIOS indicator 460 ETL: extract by month, CSV export, SQL load, checks.

Monthly partitions are Spanish local months (Europe/Madrid), because that is how Spain
publishes the forecast; the warehouse keeps the UTC instant of every hour, which is what makes
the two 02:00 rows of the autumn DST day distinct.
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from esios_assets.automation import after_forecast_lands, daily_current_month
from esios_assets.client import EsiosResource
from esios_assets.partitions import MONTHLY, months_of
from esios_assets.transform import (
    demand_forecast_frame,
    expected_hours,
    export_frame,
    sql_month_rows,
    within_month,
)
from resources.asset_metadata import column_schema, warehouse_table
from resources.http import ApiAuthError
from resources.settings import load_settings
from resources.sql import SqlDatabase
from resources.warehouse import DUCKDB_POOL

SQL_TABLE = "demand_forecast_esios"
# Peninsular demand has stayed within ~18-45 GW; outside this a value is a unit or feed error.
PLAUSIBLE_MW = (15_000.0, 50_000.0)

_COLUMNS = [
    ("name", "VARCHAR", "Indicator name as ESIOS publishes it."),
    ("id", "BIGINT", "Indicator id (460)."),
    ("datetime", "VARCHAR", "Local wall time in Spain, yyyy-mm-dd HH:MM:SS."),
    ("demand_forecast", "DOUBLE", "Forecast peninsular demand, MW."),
    ("update_timestamp", "VARCHAR", "values_updated_at, local wall time."),
]
_WAREHOUSE_COLUMNS = [
    *_COLUMNS,
    ("datetime_utc", "TIMESTAMP", "The UTC instant of the hour (unique)."),
    ("utc_offset_minutes", "INTEGER", "Spain's UTC offset then (60/120)."),
    ("datetime_local", "TIMESTAMP", "Local wall time (partition column)."),
]


@dg.asset(
    group_name="esios",
    kinds={"python", "polars", "duckdb"},
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL),
    automation_condition=daily_current_month(),
    # Refreshed daily: a day without a refresh is a warning, two days a failure.
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=50), warn_window=timedelta(hours=26)
    ),
    metadata=warehouse_table("esios", *_WAREHOUSE_COLUMNS, partition_expr="datetime_local"),
)
def esios_demand_forecast(context: dg.AssetExecutionContext, esios: EsiosResource) -> pl.DataFrame:
    """ESIOS indicator 460, the hourly day-ahead forecast of peninsular demand (MW), one
    request per Spanish month, with the UTC instant and offset of every hour."""
    frames = []
    for month in months_of(context):
        try:
            payload = esios.fetch_month(month)
        except ApiAuthError as exc:
            # A rejected token stays rejected: the step's retry policy would only wait for it.
            raise dg.Failure(str(exc), allow_retries=False) from None
        published = demand_forecast_frame(payload)
        frame = within_month(published, month)
        if frame.height < published.height:
            context.log.warning(
                f"{month:%Y-%m}: dropped {published.height - frame.height} hours outside the "
                "month that ESIOS returned with it"
            )
        context.log.info(f"{month:%Y-%m}: {frame.height} hours (expected {expected_hours(month)})")
        frames.append(frame)
    forecast = pl.concat(frames).with_columns(
        pl.col("datetime").str.to_datetime("%Y-%m-%d %H:%M:%S").alias("datetime_local")
    )
    context.add_output_metadata(
        {
            "source": esios.source.mode,
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
    automation_condition=daily_current_month(),
    metadata=column_schema(*_COLUMNS),
)
def demand_forecast_esios(
    context: dg.AssetExecutionContext,
    esios_demand_forecast: pl.DataFrame,
    sql_database: SqlDatabase,
) -> dg.MaterializeResult:
    """The forecast loaded into the existing SQL table demand_forecast_esios (SQL Server in the
    brief; any SQLAlchemy database), month by month: delete the month, insert, one transaction.

    The table needs only the brief's five columns (wall times as text or DATETIME); then a month
    is its local wall-time window. A ``datetime_utc`` column, when the table has one, is filled
    and used as the window instead."""
    with_utc = "datetime_utc" in {c.casefold() for c in sql_database.column_names(SQL_TABLE)}
    loaded = 0
    for month in months_of(context):
        rows, key, start, end = sql_month_rows(esios_demand_forecast, month, with_utc=with_utc)
        loaded += sql_database.replace_rows(SQL_TABLE, rows, key_column=key, start=start, end=end)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": loaded,
            "table": SQL_TABLE,
            "months": len(months_of(context)),
            "month_window_column": "datetime_utc" if with_utc else "datetime",
        }
    )


@dg.asset(
    group_name="esios",
    kinds={"python", "csv"},
    deps=[esios_demand_forecast],
    pool=DUCKDB_POOL,
    automation_condition=after_forecast_lands(),
    metadata=column_schema(*_COLUMNS),
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


ESIOS_ASSETS = [esios_demand_forecast, demand_forecast_esios, esios_demand_forecast_csv]
