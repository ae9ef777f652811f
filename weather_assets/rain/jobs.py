"""Jobs and schedules of the rain stream (its minute sensor is ``sensors.rain``)."""

import dagster as dg

from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.retention import compact_rain_history

rain_minute_job = dg.define_asset_job(
    name="rain_minute_job",
    selection=dg.AssetSelection.assets(*RAIN_ASSETS),
    executor_def=dg.in_process_executor,
    description="One minute of the nowcast stream: load it (the processor's output, the log, or "
    "fetched on demand; outside the duckdb pool), write it, then the next-hour totals.",
)


@dg.job(description="Deletes rain rows and payloads past their retention (see README).")
def rain_retention_job():
    compact_rain_history()


rain_retention_schedule = dg.ScheduleDefinition(
    job=rain_retention_job,
    cron_schedule="17 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly clean-up keeps the warehouse and object store bounded.",
)
