"""Raw weather-station readings for the temperature pipeline, simulated or from OpenWeatherMap.

Simulated: ``resources.simulators.weather_station`` (second-precision readings with the junk
real feeds carry). Live: One Call 3.0 ``timemachine`` through the shared HTTP base, one call per
station per hour, mapped to the same "as received" columns so the ETL cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from resources.http import HttpClient, RetryPolicy
from resources.rate_limit import TokenBucket
from resources.settings import LIVE, OPENWEATHERMAP_BASE_URL, SIMULATED
from resources.simulators.weather_station import raw_readings
from weather_assets.locations import Location

TIMEMACHINE_PATH = "/data/3.0/onecall/timemachine"
RAW_SCHEMA = {
    "station_id": pl.String,
    "observed_at": pl.String,
    "temperature_c": pl.Float64,
    "humidity_pct": pl.Float64,
    "pressure_hpa": pl.Float64,
    "wind_speed_ms": pl.Float64,
    "wind_deg": pl.Float64,
}


def timemachine_rows(payload: dict, station_id: str) -> list[dict]:
    """Map a One Call 3.0 timemachine answer (``data[]``) to raw reading rows."""
    rows = []
    for entry in payload.get("data") or []:
        wind = entry.get("wind_speed")
        rows.append(
            {
                "station_id": station_id,
                "observed_at": datetime.fromtimestamp(int(entry["dt"]), UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "temperature_c": entry.get("temp"),
                "humidity_pct": entry.get("humidity"),
                "pressure_hpa": entry.get("pressure"),
                "wind_speed_ms": wind,
                "wind_deg": entry.get("wind_deg"),
            }
        )
    return rows


class StationFeed(dg.ConfigurableResource):
    """Where raw readings come from. ``stations`` are registry ids (the office first)."""

    source_mode: str = SIMULATED
    stations: str = "office,amsterdam,rotterdam,eindhoven,groningen"
    interval_s: float = 10.0
    junk_rate: float = 0.02
    simulator_seed: int = 0
    base_url: str = OPENWEATHERMAP_BASE_URL
    api_key: str | None = None
    calls_per_minute: int = 60

    def station_ids(self) -> list[str]:
        return [s.strip() for s in self.stations.split(",") if s.strip()]

    def select(self, registry: Sequence[Location]) -> list[Location]:
        by_id = {loc.location_id: loc for loc in registry}
        unknown = [s for s in self.station_ids() if s not in by_id]
        if unknown:
            raise dg.Failure(
                f"OBSERVATION_STATIONS names {', '.join(unknown)}, not in the locations registry"
            )
        return [by_id[s] for s in self.station_ids()]

    def readings(
        self, stations: Sequence[Location], start: datetime, end: datetime
    ) -> pl.DataFrame:
        """Readings observed in ``[start, end)`` (UTC), as received."""
        if self.source_mode == SIMULATED:
            return self._simulated(stations, start, end)
        if self.source_mode == LIVE:
            return self._live(stations, start, end)
        raise dg.Failure(f"SOURCE_MODE must be simulated or live, got {self.source_mode!r}")

    def _simulated(self, stations, start: datetime, end: datetime) -> pl.DataFrame:
        frames = []
        day: date = start.date()
        while datetime.combine(day, datetime.min.time(), UTC) < end:
            frames.append(
                raw_readings(
                    stations,
                    day,
                    seed=self.simulator_seed,
                    interval_s=self.interval_s,
                    junk_rate=self.junk_rate,
                )
            )
            day += timedelta(days=1)
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=RAW_SCHEMA)
        if start.time() == datetime.min.time() and end - start == timedelta(days=len(frames)):
            return frame  # whole days, as delivered: junk (bad timestamps included) kept
        # A slice of a day: rows whose timestamp parses into the window (junk with unparseable
        # timestamps cannot be attributed to an hour and stays with the daily feed).
        stamp = pl.col("observed_at").str.to_datetime(
            "%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False
        )
        return frame.filter((stamp >= start) & (stamp < end))

    def _live(self, stations, start: datetime, end: datetime) -> pl.DataFrame:
        if not self.api_key:
            raise dg.Failure("OPENWEATHERMAP_API_KEY is not set: live station history needs it")
        http = HttpClient(
            service="OpenWeatherMap",
            base_url=self.base_url,
            key_env_var="OPENWEATHERMAP_API_KEY",
            secrets=[self.api_key],
            retry=RetryPolicy(),
            rate_limiter=TokenBucket.per_minute(self.calls_per_minute),
        )
        rows: list[dict] = []
        with http:
            for station in stations:
                hour = start
                while hour < end:
                    payload = http.get_json(
                        TIMEMACHINE_PATH,
                        params={
                            "lat": f"{station.lat:.6f}",
                            "lon": f"{station.lon:.6f}",
                            "dt": int(hour.timestamp()),
                            "units": "metric",
                            "appid": self.api_key,
                        },
                    )
                    rows.extend(timemachine_rows(payload, station.location_id))
                    hour += timedelta(hours=1)
        return pl.DataFrame(rows, schema=RAW_SCHEMA)
