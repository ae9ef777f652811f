"""Environment-driven settings shared by the Dagster wiring, scripts and the web service.

Everything that differs between a laptop and production is an environment variable (see
README "Configuration"). Reading them here, in one place, keeps defaults consistent; secrets are
deliberately *not* read here: they reach resources only through ``dg.EnvVar``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SIMULATED = "simulated"
LIVE = "live"
SOURCE_MODES = (SIMULATED, LIVE)

OPENWEATHERMAP_BASE_URL = "https://api.openweathermap.org"
ESIOS_BASE_URL = "https://api.esios.ree.es"
NASA_IMAGES_BASE_URL = "https://images-api.nasa.gov"


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """A snapshot of the platform's non-secret configuration."""

    source_mode: str
    data_dir: Path
    warehouse_path: Path
    objects_dir: Path
    s3_bucket: str | None
    s3_prefix: str
    s3_endpoint_url: str | None
    openweathermap_base_url: str
    openweathermap_calls_per_minute: int
    locations_file: Path
    simulator_seed: int
    simulator_fault_rate: float
    rain_partition_days: int
    rain_raw_retention_hours: int
    observation_stations: str
    esios_base_url: str
    stock_dataset_dir: str | None
    stock_simulated_size: str
    nasa_images_base_url: str
    search_result_sampling_factor: int

    @property
    def simulated(self) -> bool:
        return self.source_mode == SIMULATED


def load_settings() -> Settings:
    """Read the environment now (cheap, no side effects: nothing is created on disk)."""
    mode = (_env("SOURCE_MODE", SIMULATED) or SIMULATED).lower()
    if mode not in SOURCE_MODES:
        raise SettingsError(f"SOURCE_MODE must be one of {', '.join(SOURCE_MODES)}, got {mode!r}")
    data_dir = Path(_env("DATA_DIR", "data"))
    partition_days = _env_int("RAIN_PARTITION_DAYS", 30)
    # 100,000 partitions per asset is Dagster's recommended ceiling: 69 days of minutes.
    if not 1 <= partition_days <= 69:
        raise SettingsError(
            f"RAIN_PARTITION_DAYS must be between 1 and 69 (Dagster recommends at most 100,000 "
            f"partitions per asset), got {partition_days}"
        )
    retention_hours = _env_int("RAIN_RAW_RETENTION_HOURS", 48)
    if retention_hours < 1:
        raise SettingsError(f"RAIN_RAW_RETENTION_HOURS must be >= 1, got {retention_hours}")
    calls_per_minute = _env_int("OPENWEATHERMAP_CALLS_PER_MINUTE", 60)
    if calls_per_minute < 1:
        raise SettingsError(f"OPENWEATHERMAP_CALLS_PER_MINUTE must be >= 1, got {calls_per_minute}")
    return Settings(
        source_mode=mode,
        data_dir=data_dir,
        warehouse_path=Path(_env("WAREHOUSE_PATH", str(data_dir / "warehouse.duckdb"))),
        objects_dir=data_dir / "objects",
        s3_bucket=_env("S3_BUCKET"),
        s3_prefix=(_env("S3_PREFIX", "dagster") or "dagster").strip("/"),
        s3_endpoint_url=_env("S3_ENDPOINT_URL"),
        openweathermap_base_url=_env("OPENWEATHERMAP_BASE_URL", OPENWEATHERMAP_BASE_URL),
        openweathermap_calls_per_minute=calls_per_minute,
        locations_file=Path(
            _env(
                "LOCATIONS_FILE",
                str(Path(__file__).parent.parent / "weather_assets" / "locations.csv"),
            )
        ),
        simulator_seed=_env_int("SIMULATOR_SEED", 0),
        simulator_fault_rate=_fault_rate(),
        rain_partition_days=partition_days,
        rain_raw_retention_hours=retention_hours,
        observation_stations=_env(
            "OBSERVATION_STATIONS", "office,amsterdam,rotterdam,eindhoven,groningen"
        ),
        esios_base_url=_env("ESIOS_BASE_URL", ESIOS_BASE_URL),
        stock_dataset_dir=_env("STOCK_DATASET_DIR"),
        stock_simulated_size=_stock_size(),
        nasa_images_base_url=_env("NASA_IMAGES_BASE_URL", NASA_IMAGES_BASE_URL),
        search_result_sampling_factor=_sampling_factor(),
    )


def _fault_rate() -> float:
    raw = _env("SIMULATOR_FAULT_RATE")
    if raw is None:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        raise SettingsError(f"SIMULATOR_FAULT_RATE must be a number, got {raw!r}") from None
    if not 0.0 <= rate < 1.0:
        raise SettingsError(
            f"SIMULATOR_FAULT_RATE must be at least 0 and below 1 (a share of simulated "
            f"requests that fail), got {raw!r}"
        )
    return rate


STOCK_SIZES = ("small", "kaggle")


def _stock_size() -> str:
    size = (_env("STOCK_SIMULATED_SIZE", "small") or "small").lower()
    if size not in STOCK_SIZES:
        raise SettingsError(
            f"STOCK_SIMULATED_SIZE must be one of {', '.join(STOCK_SIZES)}, got {size!r}"
        )
    return size


def _sampling_factor() -> int:
    factor = _env_int("SEARCH_RESULT_SAMPLING_FACTOR", 1)
    if factor < 1:
        raise SettingsError(
            f"SEARCH_RESULT_SAMPLING_FACTOR must be >= 1 (keep one result in N), got {factor}"
        )
    return factor
