"""The nightly raw-readings ETL: yesterday through every stage, at 00:20 UTC."""

import dagster as dg

from weather_assets.observations.assets import OBSERVATION_ASSETS

observations_daily_job = dg.define_asset_job(
    name="observations_daily_job",
    selection=dg.AssetSelection.assets(*OBSERVATION_ASSETS),
    description="Yesterday's raw readings through the PySpark ETL.",
)
observations_daily_schedule = dg.build_schedule_from_partitioned_job(
    observations_daily_job,
    hour_of_day=0,
    minute_of_hour=20,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
