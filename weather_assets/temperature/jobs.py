"""Jobs and schedules of the temperature forecast: hourly scoring and prediction, daily
retraining (its bootstrap sensor is ``sensors.temperature``)."""

import dagster as dg

from weather_assets.temperature.assets import (
    temperature_accuracy,
    temperature_actuals,
    temperature_model,
    temperature_predictions,
)

temperature_actuals_job = dg.define_asset_job(
    name="temperature_actuals_job",
    selection=dg.AssetSelection.assets(temperature_actuals),
    description="Observed hourly means only (bootstrap and backfills of history).",
)
temperature_hourly_job = dg.define_asset_job(
    name="temperature_hourly_job",
    selection=dg.AssetSelection.assets(
        temperature_actuals, temperature_predictions, temperature_accuracy
    ),
    executor_def=dg.in_process_executor,
    description="The hour that just ended: its actual, the next hour's prediction, the score.",
)
temperature_hourly_schedule = dg.build_schedule_from_partitioned_job(
    temperature_hourly_job, minute_of_hour=2, default_status=dg.DefaultScheduleStatus.RUNNING
)
temperature_training_job = dg.define_asset_job(
    name="temperature_training_job",
    selection=dg.AssetSelection.assets(temperature_model),
    description="Daily retraining of the next-hour model on the last N days.",
)
temperature_training_schedule = dg.ScheduleDefinition(
    job=temperature_training_job,
    cron_schedule="50 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="After the nightly ETL (00:20) has produced yesterday's hourly table.",
)
