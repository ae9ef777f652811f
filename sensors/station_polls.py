"""Live mode's minute station polls: one ``station_poll_job`` run per UTC minute.

Run key = minute, as the rain stream. In simulated mode the sensor skips: the simulator already
delivers second-precision readings (see ``weather_assets.stations.polls``).
"""

import dagster as dg

from resources.settings import LIVE, load_settings
from sensors.rain import request_current_minute
from weather_assets.stations.polls import station_poll_job


@dg.sensor(
    job=station_poll_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Live mode: requests one station poll per UTC minute (run key = minute). "
    "Simulated mode: skips (polling is live-only).",
)
def station_poll_sensor(context: dg.SensorEvaluationContext):
    mode = load_settings().source_mode
    if mode != LIVE:
        return dg.SkipReason(f"station polling is live-only; SOURCE_MODE is {mode}")
    return request_current_minute(
        context, gap_note="their hours fall back to timemachine", partitioned=False
    )
