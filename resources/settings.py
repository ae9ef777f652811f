"""The platform's settings: one typed ``Settings``, read from the environment and ``.env``.

Everything that differs between a laptop and production is an environment variable (see
README "Configuration"). They are declared here, in one place, with their defaults and their
rules; ``load_settings()`` reads them when called (never at import) and reports every bad
variable at once. ``python -m resources.settings`` is the start-up check ``make run`` and
``make serve`` run first.

Secrets are deliberately *not* settings: API keys, tokens, ``SQL_DATABASE_URL``,
``DAGSTER_PG_URL``, ``ALERT_WEBHOOK_URL`` and AWS credentials reach resources only through
``dg.EnvVar`` (or boto3's own chain), so they are never stored, printed or logged from here.

``.env``: Dagster's CLI (``dagster dev``, ``dagster asset materialize``, the code server it
starts, run workers) loads ``.env`` from the working directory into the process environment,
*replacing* variables already exported (dagster/_cli/utils.py ``_inject_local_env_file``:
``os.environ[key] = value`` for every ``dotenv_values()`` entry with a value). Processes that
Dagster does not start (the web service, the ``python -m`` steps of the Makefile) do the same
through ``dotenv_environ()``, so all of them see the same values, secrets included. On top of
that, ``load_settings()`` reads ``.env`` itself (an exported variable wins there), so a plain
Python process (a script, a notebook) gets the same settings without loading anything.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIMULATED = "simulated"
LIVE = "live"
SOURCE_MODES = (SIMULATED, LIVE)
STOCK_SIZES = ("small", "kaggle")

OPENWEATHERMAP_BASE_URL = "https://api.openweathermap.org"
ESIOS_BASE_URL = "https://api.esios.ree.es"
NASA_IMAGES_BASE_URL = "https://images-api.nasa.gov"
# NASA's "large" renditions are a few MB; "orig" TIFFs can be hundreds: each is held in memory.
DEFAULT_NASA_MAX_DOWNLOAD_MB = 64

DEFAULT_DATA_DIR = Path("data")
DEFAULT_LOCATIONS_FILE = Path(__file__).resolve().parent.parent / "weather_assets" / "locations.csv"
DEFAULT_OBSERVATION_STATIONS = "office,amsterdam,rotterdam,eindhoven,groningen"
DEFAULT_SPARK_MASTER = "local[*]"
DEFAULT_MODEL_RELOAD_SECONDS = 5.0
DEFAULT_DASHBOARD_REFRESH_SECONDS = 10.0
# 100,000 partitions per asset is Dagster's recommended ceiling: 69 days of minutes.
MAX_RAIN_PARTITION_DAYS = 69
# The embedded NATS server's port: off the standard 4222, so a system server there is left alone.
DEFAULT_NATS_PORT = 14222

# Where ``.env`` is read from: the working directory, as Dagster does. ``None`` reads none
# (tests/conftest.py sets that, so a developer's own .env never leaks into the suite).
ENV_FILE: str | None = ".env"


class SettingsError(ValueError):
    """One or more environment variables hold values the platform cannot use.

    ``problems`` has one line per bad variable, each starting with the variable's name.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} settings are invalid:\n" + "\n".join(
                f"  - {line}" for line in self.problems
            )
        super().__init__(message)


# --- parsing helpers (messages name what is accepted and what was given) --------------------


def _integer(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
    return raw


def _number(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
    return raw


def _at_least_one(value: int, note: str = "") -> int:
    if value < 1:
        raise ValueError(f"must be >= 1{note}, got {value}")
    return value


def _one_of(raw: Any, choices: tuple[str, ...]) -> str:
    value = str(raw).lower()
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    return value


class Settings(BaseSettings):
    """A snapshot of the platform's non-secret configuration.

    Each field is read from the environment variable named by its alias (exact case); an empty
    variable counts as unset. Build it with ``load_settings()``, which turns a validation
    failure into one ``SettingsError`` listing every bad variable.
    """

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        case_sensitive=True,
        # .env also holds secrets and Dagster's own variables: not settings, not errors.
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    source_mode: str = Field(SIMULATED, validation_alias="SOURCE_MODE")
    data_dir: Path = Field(DEFAULT_DATA_DIR, validation_alias="DATA_DIR")
    warehouse_path: Path = Field(
        default_factory=lambda data: (
            Path(data.get("data_dir", DEFAULT_DATA_DIR)) / "warehouse.duckdb"
        ),
        validation_alias="WAREHOUSE_PATH",
    )
    s3_bucket: str | None = Field(None, validation_alias="S3_BUCKET")
    # The NASA brief's name for S3_BUCKET: either may be set, never two different buckets.
    s3_bucket_name: str | None = Field(None, validation_alias="S3_BUCKET_NAME")
    s3_prefix: str = Field("dagster", validation_alias="S3_PREFIX")
    s3_endpoint_url: str | None = Field(None, validation_alias="S3_ENDPOINT_URL")
    openweathermap_base_url: str = Field(
        OPENWEATHERMAP_BASE_URL, validation_alias="OPENWEATHERMAP_BASE_URL"
    )
    openweathermap_calls_per_minute: int = Field(
        60, validation_alias="OPENWEATHERMAP_CALLS_PER_MINUTE"
    )
    locations_file: Path = Field(DEFAULT_LOCATIONS_FILE, validation_alias="LOCATIONS_FILE")
    simulator_seed: int = Field(0, validation_alias="SIMULATOR_SEED")
    simulator_fault_rate: float = Field(0.0, validation_alias="SIMULATOR_FAULT_RATE")
    rain_partition_days: int = Field(30, validation_alias="RAIN_PARTITION_DAYS")
    rain_raw_retention_hours: int = Field(48, validation_alias="RAIN_RAW_RETENTION_HOURS")
    # Dagster's own history of minute runs (resources/run_history.py).
    run_retention_hours: int = Field(48, validation_alias="RUN_RETENTION_HOURS")
    failed_run_retention_days: int = Field(14, validation_alias="FAILED_RUN_RETENTION_DAYS")
    # The rain stream's log (resources/jetstream.py, weather_assets/rain/stream/).
    # May carry nats://user:password@...: kept out of repr, shown by summary() without it.
    nats_url: str | None = Field(None, validation_alias="NATS_URL", repr=False)
    nats_port: int = Field(DEFAULT_NATS_PORT, validation_alias="NATS_PORT")
    rain_stream_max_age_hours: int = Field(48, validation_alias="RAIN_STREAM_MAX_AGE_HOURS")
    rain_stream_replicas: int = Field(1, validation_alias="RAIN_STREAM_REPLICAS")
    rain_minute_grace_seconds: int = Field(90, validation_alias="RAIN_MINUTE_GRACE_SECONDS")
    rain_producers: int = Field(1, validation_alias="RAIN_PRODUCERS")
    # The stream processor's Spark checkpoint (a path or a Hadoop URI such as s3a://...);
    # default DATA_DIR/stream/checkpoint/rain. It goes with the processor's output: delete both
    # or neither.
    rain_checkpoint_dir: str | None = Field(None, validation_alias="RAIN_CHECKPOINT_DIR")
    observation_stations: str = Field(
        DEFAULT_OBSERVATION_STATIONS, validation_alias="OBSERVATION_STATIONS"
    )
    esios_base_url: str = Field(ESIOS_BASE_URL, validation_alias="ESIOS_BASE_URL")
    stock_dataset_dir: str | None = Field(None, validation_alias="STOCK_DATASET_DIR")
    stock_simulated_size: str = Field("small", validation_alias="STOCK_SIMULATED_SIZE")
    nasa_images_base_url: str = Field(NASA_IMAGES_BASE_URL, validation_alias="NASA_IMAGES_BASE_URL")
    search_result_sampling_factor: int = Field(1, validation_alias="SEARCH_RESULT_SAMPLING_FACTOR")
    nasa_max_download_mb: int = Field(
        DEFAULT_NASA_MAX_DOWNLOAD_MB, validation_alias="NASA_MAX_DOWNLOAD_MB"
    )
    spark_master: str = Field(DEFAULT_SPARK_MASTER, validation_alias="SPARK_MASTER")
    spark_driver_memory: str | None = Field(None, validation_alias="SPARK_DRIVER_MEMORY")
    spark_jars_packages: str | None = Field(None, validation_alias="SPARK_JARS_PACKAGES")
    # The web service's (serving/): read by each worker when it starts.
    model_reload_seconds: float = Field(
        DEFAULT_MODEL_RELOAD_SECONDS, validation_alias="MODEL_RELOAD_SECONDS"
    )
    dashboard_refresh_seconds: float = Field(
        DEFAULT_DASHBOARD_REFRESH_SECONDS, validation_alias="DASHBOARD_REFRESH_SECONDS"
    )

    @property
    def simulated(self) -> bool:
        return self.source_mode == SIMULATED

    @property
    def objects_dir(self) -> Path:
        """Where objects go without ``S3_BUCKET``."""
        return self.data_dir / "objects"

    # --- rules ----------------------------------------------------------------------------

    @field_validator("source_mode", mode="before")
    @classmethod
    def _source_mode(cls, raw: Any) -> str:
        return _one_of(raw, SOURCE_MODES)

    @field_validator("stock_simulated_size", mode="before")
    @classmethod
    def _stock_size(cls, raw: Any) -> str:
        return _one_of(raw, STOCK_SIZES)

    @model_validator(mode="before")
    @classmethod
    def _bucket_alias(cls, data: Any) -> Any:
        """``S3_BUCKET_NAME`` alone sets the bucket (the NASA brief names it so)."""
        if isinstance(data, dict):
            alias = data.get("S3_BUCKET_NAME", data.get("s3_bucket_name"))
            if alias and not (data.get("S3_BUCKET") or data.get("s3_bucket")):
                data = {**data, "S3_BUCKET": alias}
        return data

    @field_validator("s3_bucket_name")
    @classmethod
    def _bucket_alias_agrees(cls, alias: str | None, info: ValidationInfo) -> str | None:
        bucket = info.data.get("s3_bucket")
        if alias and bucket and alias != bucket:
            raise ValueError(
                f"is another name for S3_BUCKET, and they differ: S3_BUCKET={bucket!r}, "
                f"S3_BUCKET_NAME={alias!r}; set one of them"
            )
        return alias

    @field_validator("s3_prefix", mode="before")
    @classmethod
    def _s3_prefix(cls, raw: Any) -> Any:
        return raw.strip("/") if isinstance(raw, str) else raw

    @field_validator("simulator_seed", mode="before")
    @classmethod
    def _seed(cls, raw: Any) -> Any:
        return _integer(raw)

    @field_validator("rain_partition_days", mode="before")
    @classmethod
    def _partition_days(cls, raw: Any) -> Any:
        days = _integer(raw)
        if not 1 <= days <= MAX_RAIN_PARTITION_DAYS:
            raise ValueError(
                f"must be between 1 and {MAX_RAIN_PARTITION_DAYS} (Dagster recommends at most "
                f"100,000 partitions per asset), got {days}"
            )
        return days

    @field_validator(
        "rain_raw_retention_hours",
        "run_retention_hours",
        "failed_run_retention_days",
        "openweathermap_calls_per_minute",
        "nats_port",
        "rain_stream_max_age_hours",
        "rain_stream_replicas",
        "rain_minute_grace_seconds",
        "rain_producers",
        "nasa_max_download_mb",
        mode="before",
    )
    @classmethod
    def _positive_integer(cls, raw: Any) -> Any:
        return _at_least_one(_integer(raw))

    @field_validator("search_result_sampling_factor", mode="before")
    @classmethod
    def _sampling_factor(cls, raw: Any) -> Any:
        return _at_least_one(_integer(raw), " (keep one result in N)")

    @field_validator("simulator_fault_rate", mode="before")
    @classmethod
    def _fault_rate(cls, raw: Any) -> Any:
        rate = _number(raw)
        if not 0.0 <= rate < 1.0:
            raise ValueError(
                f"must be at least 0 and below 1 (a share of simulated requests that fail), "
                f"got {raw!r}"
            )
        return rate

    @field_validator("model_reload_seconds", mode="before")
    @classmethod
    def _reload_seconds(cls, raw: Any) -> Any:
        if isinstance(raw, str) and not raw.strip():
            return DEFAULT_MODEL_RELOAD_SECONDS
        seconds = _number(raw.strip() if isinstance(raw, str) else raw)
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"must be a finite number >= 0, got {raw!r}")
        return seconds

    @field_validator("dashboard_refresh_seconds", mode="before")
    @classmethod
    def _refresh_seconds(cls, raw: Any) -> Any:
        seconds = _number(raw)
        if not seconds > 0:
            raise ValueError(f"must be > 0, got {raw!r}")
        return seconds

    # --- reporting --------------------------------------------------------------------------

    def summary(self) -> str:
        """One line: the mode, where data goes, and every other variable that was set."""
        if self.s3_bucket:
            endpoint = f" at {self.s3_endpoint_url}" if self.s3_endpoint_url else ""
            objects = f"s3://{self.s3_bucket}/{self.s3_prefix}{endpoint}"
        else:
            objects = str(self.objects_dir / self.s3_prefix)
        shown = {"source_mode", "data_dir", "warehouse_path"}
        shown |= {"s3_bucket", "s3_bucket_name", "s3_prefix", "s3_endpoint_url"}
        extra = [
            f"{env_name(name)}={hide_password(getattr(self, name))}"
            for name in type(self).model_fields
            if name in self.model_fields_set and name not in shown
        ]
        return (
            f"SOURCE_MODE={self.source_mode}, DATA_DIR={self.data_dir}, "
            f"WAREHOUSE_PATH={self.warehouse_path}, objects in {objects}"
            + (f"; also set: {', '.join(extra)}" if extra else "")
        )


def hide_password(value: Any) -> Any:
    """A URL's password replaced by ``***`` (``nats://user:***@host``); other values as given."""
    if not isinstance(value, str) or "@" not in value:
        return value
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def env_name(field: str) -> str:
    """The environment variable behind a ``Settings`` field."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field.upper()


def _problems(error: ValidationError) -> list[str]:
    """One line per bad variable, ``NAME must be ..., got ...``, in declaration order."""
    order = {name: i for i, name in enumerate(Settings.model_fields)}
    by_alias = {env_name(name): name for name in Settings.model_fields}
    lines: list[tuple[int, str]] = []
    for item in error.errors():
        if item["type"] == "default_factory_not_called":
            continue  # WAREHOUSE_PATH's default waits for DATA_DIR: not a variable of its own
        loc = str(item["loc"][0]) if item["loc"] else "settings"
        field = by_alias.get(loc, loc)
        name = env_name(field) if field in order else loc
        cause = (item.get("ctx") or {}).get("error")
        if item["type"] == "value_error" and cause is not None:
            line = f"{name} {cause}"
        else:  # a rule of pydantic's own (a type no validator above converts)
            line = f"{name}: {item['msg']}, got {item.get('input')!r}"
        lines.append((order.get(field, len(order)), line))
    return [line for _, line in sorted(lines, key=lambda pair: pair[0])] or [str(error)]


def load_settings() -> Settings:
    """Read the environment and ``.env`` now (cheap, no side effects: nothing is created on
    disk, nothing is written to the environment). Raises ``SettingsError`` naming every bad
    variable."""
    try:
        return Settings(_env_file=ENV_FILE)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None


# --- .env the way Dagster loads it ----------------------------------------------------------


def read_env_file() -> dict[str, str]:
    """``.env`` of the working directory, parsed as Dagster parses it
    (``dagster._core.secrets.env_file.get_env_var_dict``: python-dotenv's ``dotenv_values``,
    ``${VAR}`` interpolation; a name without ``=`` is dropped; ``NAME=`` is kept, empty)."""
    if not ENV_FILE:
        return {}
    path = Path.cwd() / ENV_FILE
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


@contextmanager
def dotenv_environ() -> Iterator[dict[str, str]]:
    """``.env`` loaded into ``os.environ`` for the block, exactly as Dagster's CLI does it: each
    variable of the file *replaces* an exported one, and everything is restored on exit.
    Yields what was loaded (print the names, never the values: the file holds secrets)."""
    loaded = read_env_file()
    previous = {key: os.environ.get(key) for key in loaded}
    os.environ.update(loaded)
    try:
        yield loaded
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main() -> int:
    """The start-up check: the settings Dagster and the web service will see (``.env`` loaded
    as Dagster loads it), one summary line, or every problem and exit status 1."""
    with dotenv_environ() as loaded:
        try:
            settings = load_settings()
        except SettingsError as exc:
            print(f"settings: {exc}", file=sys.stderr)
            print(
                "settings: fix them in the environment or .env (README.md, Configuration)",
                file=sys.stderr,
            )
            return 1
    source = f" (with {ENV_FILE}: {len(loaded)} variables)" if loaded else ""
    print(f"settings{source}: {settings.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
