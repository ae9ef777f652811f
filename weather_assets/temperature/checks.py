"""Checks on the temperature forecast: plausible actuals (blocking) and the rolling MSE."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from resources.warehouse import DUCKDB_POOL, table_exists
from weather_assets.temperature.assets import (
    AccuracyConfig,
    temperature_accuracy,
    temperature_actuals,
)


@dg.asset_check(asset=temperature_accuracy, pool=DUCKDB_POOL)
def temperature_accuracy_mse_24h(
    context: dg.AssetCheckExecutionContext, config: AccuracyConfig, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Warns when the forecast's rolling 24 h MSE passes the configured threshold."""
    with warehouse.get_connection() as conn:
        row = None
        if table_exists(conn, "weather", "temperature_accuracy"):
            row = conn.execute(
                "select target_hour, mse_24h from weather.temperature_accuracy "
                "order by target_hour desc limit 1"
            ).fetchone()
    if row is None:
        # The first hours after start-up have nothing scored: not a failure of the forecast.
        return dg.AssetCheckResult(passed=True, metadata={"scored_hours": 0})
    return dg.AssetCheckResult(
        passed=row[1] <= config.mse_warn_threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "target_hour": str(row[0]),
            "mse_24h": dg.MetadataValue.float(row[1]),
            "threshold": dg.MetadataValue.float(config.mse_warn_threshold),
        },
    )


@dg.asset_check(asset=temperature_actuals, blocking=True, pool=DUCKDB_POOL)
def temperature_actuals_plausible(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Stored hourly means are physical (-60..60 °C) and one per hour: predictions use them."""
    with warehouse.get_connection() as conn:
        if not table_exists(conn, "weather", "temperature_actuals"):
            return dg.AssetCheckResult(passed=False, metadata={"reason": "no actuals stored"})
        bad, dupes = conn.execute(
            "select count(*) filter (where temperature_c not between -60 and 60 or temperature_c is null),"
            " count(*) - count(distinct timestamp) from weather.temperature_actuals"
        ).fetchone()
    return dg.AssetCheckResult(
        passed=bad == 0 and dupes == 0,
        metadata={"implausible_rows": bad, "duplicate_hours": dupes},
    )


TEMPERATURE_CHECKS = [temperature_accuracy_mse_24h, temperature_actuals_plausible]
