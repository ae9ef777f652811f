"""The raw-readings ETL as one job, for ranged runs by hand (e.g. a week of history).

Nothing schedules it: the ETL assets' automation condition (``weather_assets.automation``)
requests yesterday once after 00:20 UTC, and the last six days on a fresh instance."""

import dagster as dg

from weather_assets.observations.assets import OBSERVATION_ASSETS

observations_daily_job = dg.define_asset_job(
    name="observations_daily_job",
    selection=dg.AssetSelection.assets(*OBSERVATION_ASSETS),
    description="Days of raw readings through the PySpark ETL.",
)
