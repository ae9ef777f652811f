"""Every sensor of the platform as one ``dg.Definitions`` (the jobs they target belong to the
domains' definitions)."""

import dagster as dg

from sensors.alerts import run_failure_alert_sensor
from sensors.market import market_bootstrap_sensor
from sensors.nasa import nasa_queries_sensor
from sensors.rain import rain_minute_sensor
from sensors.station_polls import station_poll_sensor
from sensors.temperature import temperature_bootstrap_sensor

defs = dg.Definitions(
    sensors=[
        rain_minute_sensor,
        station_poll_sensor,
        temperature_bootstrap_sensor,
        market_bootstrap_sensor,
        nasa_queries_sensor,
        run_failure_alert_sensor,
    ]
)
