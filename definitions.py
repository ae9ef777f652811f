"""The platform's single ``dg.Definitions``: every asset, check, job, sensor and resource.

Loading this module must stay cheap and side-effect free (the UI reloads it often): it reads
environment variables and builds objects, but opens no connection, file or Spark session.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

# BackfillPolicy is "beta" in 1.13 but is how single-run range backfills are declared; silence
# it before the asset modules import, or it repeats in every log the UI shows.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from dagster_duckdb import DuckDBResource

from esios_assets.assets import ESIOS_ASSETS, ESIOS_CHECKS
from market_assets.assets import MARKET_ASSETS, MARKET_CHECKS, market_job
from nasa_assets.assets import NASA_ASSETS, NASA_CHECKS, nasa_job
from resources.coordinates import CoordinateRegistry
from resources.esios import EsiosResource
from resources.nasa_images import NasaImagesResource
from resources.object_store import object_io_manager_from, object_store_from
from resources.openweathermap import OpenWeatherMapResource
from resources.settings import LIVE, Settings, load_settings
from resources.spark import spark_resource_from_env
from resources.sql import SqlDatabase, default_sqlite_url
from resources.station_feed import StationFeed
from resources.stock_dataset import stock_dataset_from
from resources.warehouse import WarehouseIOManager
from sensors.alerts import run_failure_alert_sensor
from sensors.market import market_bootstrap_sensor
from sensors.nasa import nasa_queries_sensor
from sensors.rain import rain_minute_sensor
from sensors.station_polls import station_poll_job, station_poll_sensor
from sensors.temperature import temperature_bootstrap_sensor
from weather_assets.observation_assets import (
    OBSERVATION_ASSETS,
    observations_daily_job,
    observations_daily_schedule,
    spark_cluster_report,
)
from weather_assets.rain_assets import RAIN_ASSETS, RAIN_CHECKS, rain_minute_job
from weather_assets.rain_retention import rain_retention_job, rain_retention_schedule
from weather_assets.temperature_assets import (
    TEMPERATURE_ASSETS,
    TEMPERATURE_CHECKS,
    temperature_actuals_job,
    temperature_hourly_job,
    temperature_hourly_schedule,
    temperature_training_job,
    temperature_training_schedule,
)


def _secret(*names: str) -> dict[str, dg.EnvVar]:
    """Map resource fields to the first set variable, as ``dg.EnvVar`` (resolved at run time)."""
    for field, name in names:
        if os.environ.get(name):
            return {field: dg.EnvVar(name)}
    return {}


def build_resources(settings: Settings) -> dict[str, object]:
    keys = _secret(("api_keys", "OPENWEATHERMAP_API_KEYS"), ("api_key", "OPENWEATHERMAP_API_KEY"))
    if settings.source_mode == LIVE and not keys:
        # Unset on purpose: the run fails at start with Dagster naming the variable.
        keys = {"api_key": dg.EnvVar("OPENWEATHERMAP_API_KEY")}
    return {
        "io_manager": WarehouseIOManager(database=str(settings.warehouse_path)),
        "object_io_manager": object_io_manager_from(settings),
        "object_store": object_store_from(settings),
        # No replacement scans: a missing table must be an error, never a Python variable of
        # the same name (asset functions are named like their tables).
        "warehouse": DuckDBResource(
            database=str(settings.warehouse_path),
            connection_config={"python_enable_replacements": False},
        ),
        "coordinates": CoordinateRegistry(locations_file=str(settings.locations_file)),
        "pyspark": spark_resource_from_env(),
        "station_feed": StationFeed(
            source_mode=settings.source_mode,
            stations=settings.observation_stations,
            base_url=settings.openweathermap_base_url,
            simulator_seed=settings.simulator_seed,
            **({"api_key": keys["api_key"]} if "api_key" in keys else {}),
        ),
        "esios": EsiosResource(
            source_mode=settings.source_mode,
            base_url=settings.esios_base_url,
            simulator_seed=settings.simulator_seed,
            simulator_fault_rate=settings.simulator_fault_rate,
            **(
                {"api_token": dg.EnvVar("ESIOS_API_TOKEN")}
                if settings.source_mode == LIVE or os.environ.get("ESIOS_API_TOKEN")
                else {}
            ),
        ),
        # The URL may carry a password: an EnvVar, resolved at run time, never logged.
        "sql_database": SqlDatabase(
            url=dg.EnvVar("SQL_DATABASE_URL")
            if os.environ.get("SQL_DATABASE_URL")
            else default_sqlite_url(settings.data_dir)
        ),
        "stock_dataset": stock_dataset_from(settings),
        # No key is needed; NASA_API_KEY, if set, is an EnvVar like every secret.
        "nasa_library": NasaImagesResource(
            source_mode=settings.source_mode,
            base_url=settings.nasa_images_base_url,
            simulator_seed=settings.simulator_seed,
            simulator_fault_rate=settings.simulator_fault_rate,
            **({"api_key": dg.EnvVar("NASA_API_KEY")} if os.environ.get("NASA_API_KEY") else {}),
        ),
        "openweathermap": OpenWeatherMapResource(
            source_mode=settings.source_mode,
            base_url=settings.openweathermap_base_url,
            calls_per_minute=settings.openweathermap_calls_per_minute,
            simulator_seed=settings.simulator_seed,
            simulator_fault_rate=settings.simulator_fault_rate,
            **(keys if settings.source_mode == LIVE else {}),
        ),
    }


defs = dg.Definitions(
    assets=[
        *RAIN_ASSETS,
        *OBSERVATION_ASSETS,
        spark_cluster_report,
        *TEMPERATURE_ASSETS,
        *ESIOS_ASSETS,
        *MARKET_ASSETS,
        *NASA_ASSETS,
    ],
    asset_checks=[
        *RAIN_CHECKS,
        *TEMPERATURE_CHECKS,
        *ESIOS_CHECKS,
        *MARKET_CHECKS,
        *NASA_CHECKS,
    ],
    jobs=[
        rain_minute_job,
        rain_retention_job,
        observations_daily_job,
        temperature_actuals_job,
        temperature_hourly_job,
        temperature_training_job,
        station_poll_job,
        market_job,
        nasa_job,
    ],
    sensors=[
        rain_minute_sensor,
        temperature_bootstrap_sensor,
        station_poll_sensor,
        market_bootstrap_sensor,
        nasa_queries_sensor,
        run_failure_alert_sensor,
    ],
    schedules=[
        rain_retention_schedule,
        observations_daily_schedule,
        temperature_hourly_schedule,
        temperature_training_schedule,
    ],
    resources=build_resources(load_settings()),
)
