"""Jobs of the temperature forecast, for runs by hand (a range of actuals, one hour again).

Nothing schedules them: the assets' automation conditions (``weather_assets.automation``) say
when each hour and the daily model run."""

import dagster as dg

from weather_assets.temperature.assets import (
    temperature_accuracy,
    temperature_actuals,
    temperature_predictions,
)

temperature_actuals_job = dg.define_asset_job(
    name="temperature_actuals_job",
    selection=dg.AssetSelection.assets(temperature_actuals),
    description="Observed hourly means only (backfills of history).",
)
temperature_hourly_job = dg.define_asset_job(
    name="temperature_hourly_job",
    selection=dg.AssetSelection.assets(
        temperature_actuals, temperature_predictions, temperature_accuracy
    ),
    executor_def=dg.in_process_executor,
    description="One hour again: its actual, the next hour's prediction, the score.",
)
