"""The platform's single ``dg.Definitions``: the four domains merged, with the sensors and the
resources they share.

Each domain builds its own ``dg.Definitions`` (``*_assets/definitions.py``); this module builds
every resource once, from the environment, and decides here, in one place, whether the API
resources talk to the real APIs or to their simulators (``SOURCE_MODE``). Loading it must stay
cheap and side-effect free (the UI reloads it often): it reads environment variables and builds
objects, but opens no connection, file or Spark session.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

# BackfillPolicy is "beta" in 1.13 but is how single-run range backfills are declared; silence
# it before the asset modules import, or it repeats in every log the UI shows.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from dagster_duckdb import DuckDBResource

import esios_assets.definitions as esios
import market_assets.definitions as market
import nasa_assets.definitions as nasa
import sensors.definitions as sensors
import weather_assets.definitions as weather
from esios_assets.client import EsiosResource
from market_assets.dataset import StockDataset
from nasa_assets.client import NasaImagesResource
from resources.api_budget import DB_URL_ENV_VAR, budget_file
from resources.object_store import object_io_manager_from, object_store_from
from resources.settings import Settings, load_settings
from resources.source import SourceConfig
from resources.spark import spark_resource_from_env
from resources.sql import SqlDatabase, default_sqlite_url
from resources.warehouse import WarehouseIOManager
from weather_assets.locations import CoordinateRegistry
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.stations.feed import StationFeed


def _secret(*names: tuple[str, str]) -> dict[str, dg.EnvVar]:
    """Map a resource field to the first set variable, as ``dg.EnvVar`` (resolved at run time,
    never stored in the definitions)."""
    for field, name in names:
        if os.environ.get(name):
            return {field: dg.EnvVar(name)}
    return {}


def shared_resources(settings: Settings) -> dict[str, object]:
    """Storage and compute every domain uses: warehouse, object store, Spark, SQL target."""
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
        "pyspark": spark_resource_from_env(settings=settings),
        # The URL may carry a password: an EnvVar, resolved at run time, never logged.
        "sql_database": SqlDatabase(
            url=dg.EnvVar("SQL_DATABASE_URL")
            if os.environ.get("SQL_DATABASE_URL")
            else default_sqlite_url(settings.data_dir)
        ),
    }


def source_resources(settings: Settings) -> dict[str, object]:
    """The domains' API and dataset resources, all on one ``SourceConfig``: simulated or live."""
    source = SourceConfig(
        mode=settings.source_mode,
        seed=settings.simulator_seed,
        fault_rate=settings.simulator_fault_rate,
    )
    owm_keys = _secret(
        ("api_keys", "OPENWEATHERMAP_API_KEYS"), ("api_key", "OPENWEATHERMAP_API_KEY")
    )
    if source.live and not owm_keys:
        # Unset on purpose: the run fails at start with Dagster naming the variable.
        owm_keys = {"api_key": dg.EnvVar("OPENWEATHERMAP_API_KEY")}
    # One budget per API key for every process: SQLite under DATA_DIR, or PostgreSQL when set.
    budgets = {
        "rate_limit_file": budget_file(settings.data_dir),
        **_secret(("rate_limit_db_url", DB_URL_ENV_VAR)),
    }
    station_feed = StationFeed(
        source=source,
        stations=settings.observation_stations,
        base_url=settings.openweathermap_base_url,
        calls_per_minute=settings.openweathermap_calls_per_minute,
        **owm_keys,
        **budgets,
    )
    esios_token = (
        {"api_token": dg.EnvVar("ESIOS_API_TOKEN")}
        if source.live or os.environ.get("ESIOS_API_TOKEN")
        else {}
    )
    return {
        "coordinates": CoordinateRegistry(locations_file=str(settings.locations_file)),
        "openweathermap": OpenWeatherMapResource(
            source=source,
            base_url=settings.openweathermap_base_url,
            calls_per_minute=settings.openweathermap_calls_per_minute,
            # The live station polls spend the same keys each minute: the shards leave room.
            station_calls_per_minute=len(station_feed.station_ids()) if source.live else 0,
            **(owm_keys if source.live else {}),
            **budgets,
        ),
        "station_feed": station_feed,
        "esios": EsiosResource(source=source, base_url=settings.esios_base_url, **esios_token),
        # No key is needed; NASA_API_KEY, if set, is an EnvVar like every secret.
        "nasa_library": NasaImagesResource(
            source=source,
            base_url=settings.nasa_images_base_url,
            max_download_mb=settings.nasa_max_download_mb,
            **_secret(("api_key", "NASA_API_KEY")),
            **budgets,
        ),
        "stock_dataset": StockDataset(
            source=source,
            dataset_dir=settings.stock_dataset_dir,
            generated_dir=str(settings.data_dir / "stock_market"),
            size=settings.stock_simulated_size,
        ),
    }


def build_resources(settings: Settings) -> dict[str, object]:
    return {**shared_resources(settings), **source_resources(settings)}


defs = dg.Definitions.merge(
    weather.defs,
    esios.defs,
    nasa.defs,
    market.defs,
    sensors.defs,
    dg.Definitions(resources=build_resources(load_settings())),
)
