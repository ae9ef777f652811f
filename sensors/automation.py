"""The automation condition sensor: evaluates every asset's ``dg.AutomationCondition``.

On by default, so ``make run`` bootstraps the market group and the temperature forecast and
runs the nightly ETL, the daily retraining and the hourly forecast with no switch to flip.
Dagster 1.13 evaluates it in the daemon (``auto_materialize: use_sensors`` defaults to true);
assets without a condition (the rain minutes: ``rain_minute_sensor``) are not touched.
"""

import dagster as dg

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    name="automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    # The finest timing a condition waits for is the two-minute grace after each hour.
    minimum_interval_seconds=30,
    description="Requests the assets whose automation conditions are true (bootstraps, the "
    "nightly ETL after 00:20 UTC, the daily retrain once yesterday is through the ETL, the "
    "hourly forecast after :02, ESIOS and NASA refreshes).",
)
