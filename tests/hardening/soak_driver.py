"""The rain-stream soak, shared by the CI test and ``benchmarks/fault_soak.py``.

Consecutive minute partitions, one run each (as the minute sensor launches them), with the
simulators failing a share of requests (``SIMULATOR_FAULT_RATE``). What each run did is read
back from the instance (its retry log lines) and the warehouse (its rows), not from memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from weather_assets.locations import Location
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.client import OpenWeatherMapResource, fetch_nowcasts
from weather_assets.rain.transforms import forecasts_frame, next_hour_precipitation

RETRY_MARK = "retrying in"


@dataclass
class MinuteOutcome:
    """One soak partition: how its run went, from the run's own records."""

    key: str
    success: bool
    seconds: float
    http_retries: int
    retries_by_reason: dict[str, int]
    failed_coordinates: int
    retry_log_lines: list[str] = field(default_factory=list)


def consecutive_minutes(count: int, *, minutes_ago: int) -> list[str]:
    """``count`` minute partition keys ending ``minutes_ago`` minutes before now."""
    first = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)
    return [(first + timedelta(minutes=i)).strftime(MINUTE_FORMAT) for i in range(count)]


def write_locations(path: Path, source: Path, count: int) -> Path:
    """The first ``count`` coordinates of ``source`` (the office first), as a new registry."""
    lines = source.read_text().splitlines()
    path.write_text("\n".join(lines[: count + 1]) + "\n")
    return path


def run_minutes(
    keys: list[str], resources: dict, instance: dg.DagsterInstance
) -> list[MinuteOutcome]:
    """Materialize the rain assets (and their checks) one minute partition per run."""
    outcomes = []
    for key in keys:
        started = time.perf_counter()
        result = dg.materialize(
            [*RAIN_ASSETS, *RAIN_CHECKS],
            resources=resources,
            instance=instance,
            partition_key=key,
            raise_on_error=False,
        )
        seconds = time.perf_counter() - started
        meta = {}
        if result.success:
            meta = result.asset_materializations_for_node("rain_forecasts")[0].metadata
        lines = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if RETRY_MARK in (entry.user_message or "")
        ]
        outcomes.append(
            MinuteOutcome(
                key=key,
                success=result.success,
                seconds=seconds,
                http_retries=meta["http_retries"].value if meta else -1,
                retries_by_reason=meta["http_retries_by_reason"].value if meta else {},
                failed_coordinates=meta["failed_coordinates"].value if meta else -1,
                retry_log_lines=lines,
            )
        )
    return outcomes


def stored_totals(warehouse: Path, keys: list[str]) -> pl.DataFrame:
    """``weather.rolling_precipitation_sum`` rows of the soak's minutes."""
    minutes = [datetime.strptime(k, MINUTE_FORMAT) for k in keys]
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(
            "select location_id, window_start, next_hour_precipitation_mm, minutes_covered "
            "from weather.rolling_precipitation_sum where window_start between ? and ?",
            [min(minutes), max(minutes)],
        ).pl()


def duplicate_forecast_rows(warehouse: Path) -> int:
    """Rows of ``weather.rain_forecasts`` beyond the first per (coordinate, minute, forecast)."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(
            "select coalesce(sum(n - 1), 0) from (select count(*) as n from weather.rain_forecasts "
            "group by location_id, fetched_minute, forecast_at)"
        ).fetchone()[0]


def fault_free_totals(
    keys: list[str], locations: list[Location], resource: OpenWeatherMapResource
) -> pl.DataFrame:
    """The same minutes computed directly, without faults or Dagster: the reference."""
    clean = resource.model_copy(
        update={"source": resource.source.model_copy(update={"fault_rate": 0.0})}
    )
    frames = []
    for key in keys:
        minute = datetime.strptime(key, MINUTE_FORMAT).replace(tzinfo=UTC)
        clients = clean.clients_for(1, clock=lambda minute=minute: minute)
        results = fetch_nowcasts([locations], clients)
        frames.append(forecasts_frame(((r.location, r.rows) for r in results), minute))
    totals = next_hour_precipitation(pl.concat(frames))
    return totals.select(
        "location_id", "window_start", "next_hour_precipitation_mm", "minutes_covered"
    )
