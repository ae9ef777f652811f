"""The weather domain's ``dg.Definitions``: every asset, check, job and schedule of its four
streams, found in the modules that declare them (resources come from the root
``definitions.py``; sensors from ``sensors/``)."""

import dagster as dg

from weather_assets.observations import assets as observation_assets
from weather_assets.observations import jobs as observation_jobs
from weather_assets.rain import assets as rain_assets
from weather_assets.rain import checks as rain_checks
from weather_assets.rain import jobs as rain_jobs
from weather_assets.rain import run_history as rain_run_history
from weather_assets.stations import polls as station_polls
from weather_assets.temperature import assets as temperature_assets
from weather_assets.temperature import checks as temperature_checks
from weather_assets.temperature import jobs as temperature_jobs

defs = dg.load_definitions_from_modules(
    [
        rain_assets,
        rain_checks,
        rain_jobs,
        rain_run_history,
        observation_assets,
        observation_jobs,
        temperature_assets,
        temperature_checks,
        temperature_jobs,
        station_polls,
    ]
)
