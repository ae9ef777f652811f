"""Every sensor of the platform as one ``dg.Definitions`` (the jobs they target belong to the
domains' definitions). Bootstraps, the nightly ETL, retraining and the hourly forecast are the
assets' automation conditions, evaluated by ``automation_condition_sensor``; a hand-written
sensor stays where a condition cannot say it: the rain minutes follow the log's progress, the
station polls are an op job, NASA queries come from a file, alerts react to failed runs."""

import dagster as dg

from sensors.alerts import run_failure_alert_sensor
from sensors.automation import automation_condition_sensor
from sensors.nasa import nasa_queries_sensor
from sensors.rain import rain_minute_sensor
from sensors.station_polls import station_poll_sensor

defs = dg.Definitions(
    sensors=[
        rain_minute_sensor,
        station_poll_sensor,
        automation_condition_sensor,
        nasa_queries_sensor,
        run_failure_alert_sensor,
    ]
)
