"""Raw weather-station readings for the temperature pipeline, simulated or from OpenWeatherMap.

Simulated: ``weather_assets.stations.simulator`` (second-precision readings with the junk
real feeds carry). Live: One Call 3.0 ``current``, polled once a minute per station
(``poll_current``, stored by ``sensors.station_polls``), and ``timemachine`` (one call per
station per hour) for the hours without polls; both go through the shared HTTP base and map to
the same "as received" columns, so the ETL cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from resources.http import HttpClient, RetryPolicy
from resources.settings import OPENWEATHERMAP_BASE_URL
from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.rain.client import key_limiter, split_keys
from weather_assets.stations.simulator import raw_readings

TIMEMACHINE_PATH = "/data/3.0/onecall/timemachine"
ONECALL_PATH = "/data/3.0/onecall"
CURRENT_EXCLUDE = "minutely,hourly,daily,alerts"
OBSERVED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
HOUR = timedelta(hours=1)
RAW_SCHEMA = {
    "station_id": pl.String,
    "observed_at": pl.String,
    "temperature_c": pl.Float64,
    "humidity_pct": pl.Float64,
    "pressure_hpa": pl.Float64,
    "wind_speed_ms": pl.Float64,
    "wind_deg": pl.Float64,
}


def to_csv_bytes(frame: pl.DataFrame) -> bytes:
    """Readings as the feed's CSV file (header, comma-separated, nulls as empty fields)."""
    return frame.write_csv().encode("utf-8")


def _reading_row(entry: dict, station_id: str) -> dict:
    """One One Call 3.0 weather entry (``current`` or a ``data[]`` item) as a raw reading row."""
    return {
        "station_id": station_id,
        "observed_at": datetime.fromtimestamp(int(entry["dt"]), UTC).strftime(OBSERVED_AT_FORMAT),
        "temperature_c": entry.get("temp"),
        "humidity_pct": entry.get("humidity"),
        "pressure_hpa": entry.get("pressure"),
        "wind_speed_ms": entry.get("wind_speed"),
        "wind_deg": entry.get("wind_deg"),
    }


def timemachine_rows(payload: dict, station_id: str) -> list[dict]:
    """Map a One Call 3.0 timemachine answer (``data[]``) to raw reading rows."""
    return [_reading_row(entry, station_id) for entry in payload.get("data") or []]


def current_rows(payload: dict, station_id: str) -> list[dict]:
    """Map a One Call 3.0 answer with ``current`` to raw reading rows (one, or none without it)."""
    current = payload.get("current")
    return [_reading_row(current, station_id)] if current else []


def _observed(column: str = "observed_at") -> pl.Expr:
    return pl.col(column).str.to_datetime(OBSERVED_AT_FORMAT, time_zone="UTC", strict=False)


def hours_without_polls(
    polls: pl.DataFrame | None, station_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, list[datetime]]:
    """Per station, the hours ``start + k h`` in ``[start, end)`` with no poll observed in them.

    Pure (no HTTP): these are the hours live mode asks timemachine for.
    """
    hours = []
    hour = start
    while hour < end:
        hours.append(hour)
        hour += HOUR
    covered: dict[str, set[int]] = {s: set() for s in station_ids}
    if polls is not None and polls.height:
        stamp = _observed()
        seen = (
            polls.filter(pl.col("station_id").is_in(list(station_ids)))
            .filter((stamp >= start) & (stamp < end))
            .select(
                "station_id",
                ((stamp - pl.lit(start)).dt.total_seconds() // 3600).cast(pl.Int64).alias("k"),
            )
            .unique()
        )
        for station_id, k in seen.iter_rows():
            covered[station_id].add(k)
    return {s: [h for k, h in enumerate(hours) if k not in covered[s]] for s in station_ids}


def merge_polls_and_history(
    polls: pl.DataFrame | None,
    history: pl.DataFrame,
    station_ids: Sequence[str],
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """The window's raw readings: the polls of ``station_ids`` observed in ``[start, end)``
    plus the timemachine ``history`` fetched for the hours without polls.

    Pure (no HTTP). Repeated polls of the same observation (One Call updates ``current`` less
    often than once a minute) are kept once; rows are ordered by station, then time.
    """
    frames = [history.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA)]
    if polls is not None and polls.height:
        stamp = _observed()
        frames.insert(
            0,
            polls.select(list(RAW_SCHEMA))
            .cast(RAW_SCHEMA)
            .filter(pl.col("station_id").is_in(list(station_ids)))
            .filter((stamp >= start) & (stamp < end))
            .unique(maintain_order=True),
        )
    order = {s: i for i, s in enumerate(station_ids)}
    merged = pl.concat(frames)
    return (
        merged.with_columns(
            pl.col("station_id").replace_strict(order, default=len(order)).alias("_order")
        )
        .sort("_order", "observed_at", maintain_order=True)
        .drop("_order")
    )


class StationFeed(dg.ConfigurableResource):
    """Where raw readings come from. ``stations`` are registry ids (the office first).

    Live mode calls One Call with the rain fetch's keys (``api_keys``, else ``api_key``): station
    ``i`` of a call uses key ``i mod n``, and with ``rate_limit_file``/``rate_limit_db_url`` set
    each key's calls come out of the same shared budget as the rain fetch's
    (``OpenWeatherMapResource.station_calls_per_minute`` keeps room for the polls).
    """

    source: SourceConfig = SourceConfig()
    stations: str = "office,amsterdam,rotterdam,eindhoven,groningen"
    interval_s: float = 10.0
    junk_rate: float = 0.02
    base_url: str = OPENWEATHERMAP_BASE_URL
    # repr=False: a resource's repr lists its fields, a resolved dg.EnvVar included.
    api_key: str | None = Field(default=None, repr=False)
    api_keys: str | None = Field(default=None, repr=False)
    calls_per_minute: int = 60
    rate_limit_file: str | None = None
    rate_limit_db_url: str | None = Field(default=None, repr=False)

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
        self,
        stations: Sequence[Location],
        start: datetime,
        end: datetime,
        polls: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Readings observed in ``[start, end)`` (UTC), as received.

        Live mode: ``polls`` (stored minute polls, ``poll_store.read_polls``)
        are used where there are any; timemachine is called only for the hours of the window
        in which a station has no poll. Simulated mode ignores ``polls``.
        """
        if self.source.live:
            return self._live(stations, start, end, polls)
        return self._simulated(stations, start, end)

    def poll_current(self, stations: Sequence[Location]) -> pl.DataFrame:
        """The stations' current weather (One Call 3.0 ``current``), one call each; live only.

        ``GET /data/3.0/onecall?lat=..&lon=..&exclude=minutely,hourly,daily,alerts&units=metric``
        through the shared HTTP base (rate limit per key, retries). An ``ApiError`` that
        survives the retries is raised: that minute's poll fails as a whole.
        """
        if not self.source.live:
            raise dg.Failure(
                f"station polling is live-only (SOURCE_MODE=live), not {self.source.mode!r}: "
                "simulated readings come from the simulator, day by day"
            )
        rows: list[dict] = []
        with self._clients("live station polling", len(stations)) as clients:
            for station, (http, key) in zip(stations, clients, strict=True):
                payload = http.get_json(
                    ONECALL_PATH,
                    params={
                        "lat": f"{station.lat:.6f}",
                        "lon": f"{station.lon:.6f}",
                        "exclude": CURRENT_EXCLUDE,
                        "units": "metric",
                        "appid": key,
                    },
                )
                rows.extend(current_rows(payload, station.location_id))
        return pl.DataFrame(rows, schema=RAW_SCHEMA)

    @contextmanager
    def _clients(self, purpose: str, n: int) -> Iterator[list[tuple[HttpClient, str]]]:
        """``(client, key)`` for stations ``0..n-1`` of a call: station ``i`` on key ``i mod k``,
        one client (rate limit, retries, redaction) per key, closed on exit."""
        keys = split_keys(self.api_keys, self.api_key)
        if not keys:
            raise dg.Failure(
                f"OPENWEATHERMAP_API_KEY is not set: {purpose} needs it (or "
                "OPENWEATHERMAP_API_KEYS, comma-separated)"
            )
        env_var = "OPENWEATHERMAP_API_KEYS" if self.api_keys else "OPENWEATHERMAP_API_KEY"
        with ExitStack() as stack:
            by_key: dict[str, HttpClient] = {}
            for key in keys[:n]:
                by_key[key] = stack.enter_context(
                    HttpClient(
                        service="OpenWeatherMap",
                        base_url=self.base_url,
                        key_env_var=env_var,
                        secrets=keys,
                        retry=RetryPolicy(),
                        rate_limiter=key_limiter(
                            key, self.calls_per_minute, self.rate_limit_file, self.rate_limit_db_url
                        ),
                    )
                )
            yield [(by_key[keys[i % len(keys)]], keys[i % len(keys)]) for i in range(n)]

    def _simulated(self, stations, start: datetime, end: datetime) -> pl.DataFrame:
        frames = []
        day: date = start.date()
        while datetime.combine(day, datetime.min.time(), UTC) < end:
            frames.append(
                raw_readings(
                    stations,
                    day,
                    seed=self.source.seed,
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

    def _live(
        self, stations, start: datetime, end: datetime, polls: pl.DataFrame | None
    ) -> pl.DataFrame:
        ids = [s.location_id for s in stations]
        missing = hours_without_polls(polls, ids, start, end)
        rows: list[dict] = []
        if any(missing.values()):
            with self._clients("live station history", len(stations)) as clients:
                for station, (http, key) in zip(stations, clients, strict=True):
                    for hour in missing[station.location_id]:
                        payload = http.get_json(
                            TIMEMACHINE_PATH,
                            params={
                                "lat": f"{station.lat:.6f}",
                                "lon": f"{station.lon:.6f}",
                                "dt": int(hour.timestamp()),
                                "units": "metric",
                                "appid": key,
                            },
                        )
                        rows.extend(timemachine_rows(payload, station.location_id))
        history = pl.DataFrame(rows, schema=RAW_SCHEMA)
        if polls is None:
            return history  # no polls at all: timemachine only, as before
        return merge_polls_and_history(polls, history, ids, start, end)
