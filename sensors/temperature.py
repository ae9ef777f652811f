"""Bootstraps the temperature forecast on a fresh instance, and refills it after downtime.

The hourly schedule needs a model and the last 24 observed hours, and the daily model needs
six days of hourly observations (five to train on, one to score it). On a fresh platform none
exist; this sensor requests them once, oldest first, then stays quiet.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg

from resources import clock
from weather_assets.observations.jobs import observations_daily_job
from weather_assets.partitions import DAY_FORMAT, HOUR_FORMAT
from weather_assets.temperature.jobs import (
    temperature_actuals_job,
    temperature_hourly_job,
    temperature_training_job,
)

BOOTSTRAP_DAYS = 6
BOOTSTRAP_HOURS = 25
SCHEDULE_GRACE_MINUTES = 10


@dataclass(frozen=True)
class BootstrapStep:
    job_name: str
    first: str
    last: str

    @property
    def run_key(self) -> str:
        return f"bootstrap:{self.job_name}:{self.first}...{self.last}"


def next_bootstrap_step(
    now: datetime,
    hourly_days: set[str],
    has_model: bool,
    actual_hours: set[str],
    prediction_hours: set[str],
) -> BootstrapStep | None:
    """The first missing piece, oldest dependency first; None once the forecast can run."""
    yesterday: date = now.date() - timedelta(days=1)
    days = [(yesterday - timedelta(days=i)).strftime(DAY_FORMAT) for i in range(BOOTSTRAP_DAYS)][
        ::-1
    ]
    missing_days = [d for d in days if d not in hourly_days]
    if missing_days:
        return BootstrapStep(observations_daily_job.name, missing_days[0], missing_days[-1])
    if not has_model:
        return BootstrapStep(temperature_training_job.name, days[-1], days[-1])
    # The hour that just ended belongs to the hourly schedule (minute 2); the sensor only steps in
    # for it after SCHEDULE_GRACE_MINUTES, e.g. when the schedule's run failed or was skipped.
    hours_back = 1 if now.minute >= SCHEDULE_GRACE_MINUTES else 2
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_back)
    hours = [
        (last_hour - timedelta(hours=i)).strftime(HOUR_FORMAT) for i in range(BOOTSTRAP_HOURS)
    ][::-1]
    missing_hours = [h for h in hours if h not in actual_hours]
    if missing_hours:
        return BootstrapStep(temperature_actuals_job.name, missing_hours[0], missing_hours[-1])
    if hours[-1] not in prediction_hours:
        return BootstrapStep(temperature_hourly_job.name, hours[-1], hours[-1])
    return None


@dg.sensor(
    jobs=[
        observations_daily_job,
        temperature_training_job,
        temperature_actuals_job,
        temperature_hourly_job,
    ],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="On a fresh instance, requests the history the hourly forecast needs, once.",
)
def temperature_bootstrap_sensor(context: dg.SensorEvaluationContext):
    instance = context.instance
    step = next_bootstrap_step(
        clock.utcnow(),
        hourly_days=instance.get_materialized_partitions(
            dg.AssetKey("weather_observations_hourly")
        ),
        has_model=instance.get_latest_materialization_event(dg.AssetKey("temperature_model"))
        is not None,
        actual_hours=instance.get_materialized_partitions(dg.AssetKey("temperature_actuals")),
        prediction_hours=instance.get_materialized_partitions(
            dg.AssetKey("temperature_predictions")
        ),
    )
    if step is None:
        return dg.SkipReason("forecast history is in place; the schedules take it from here")
    tags = {}
    if step.job_name != temperature_training_job.name:
        tags = {
            "dagster/asset_partition_range_start": step.first,
            "dagster/asset_partition_range_end": step.last,
        }
    return dg.RunRequest(run_key=step.run_key, job_name=step.job_name, tags=tags)
