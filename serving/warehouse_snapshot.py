"""What the dashboard shows, read from the DuckDB warehouse into memory by a background thread.

DuckDB allows one writing process per file, and Dagster runs write it all day. A request that
opened the warehouse itself could wait on (or fail because of) a run's write lock, so requests
never touch DuckDB: they read the last published ``Snapshot``. A refresher thread reads the
warehouse read-only every ``DASHBOARD_REFRESH_SECONDS`` (retrying while a run holds the lock)
and swaps in a new snapshot only when the whole read succeeded; when it fails, the previous
snapshot stays and the error is reported beside it. Every page says how old its data is.
The reported error is generic (pages are public); the exception, which can name files, PIDs
and buckets, goes to the server log. The refresher survives any exception and tries again on
the next tick: only an exit (SystemExit, KeyboardInterrupt) ends it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from resources import clock
from resources.settings import DEFAULT_DASHBOARD_REFRESH_SECONDS
from resources.warehouse import read_only_connection
from serving.realtime_rain import RealtimeRain
from weather_assets.locations import LocationsError, load_locations
from weather_assets.rain.latest import LATEST_SQL

log = logging.getLogger("serving.dashboard")

DEFAULT_REFRESH_SECONDS = DEFAULT_DASHBOARD_REFRESH_SECONDS
# The rain numbers are per minute; older than this they are no longer "the next hour".
RAIN_STALE_AFTER = timedelta(minutes=3)
TEMPERATURE_DAYS = 7
# What the pages say when a read fails (the details are in the server log).
NO_WAREHOUSE = "the warehouse does not exist yet: materialize an asset first"
WAREHOUSE_BUSY = "the warehouse was busy (a run is writing it); see the server log"
READ_FAILED = "the warehouse could not be read; see the server log"
REALTIME_SOURCE = "real-time view"
WAREHOUSE_SOURCE = "warehouse"

TEMPERATURE_SQL = """
with bounds as (select max(timestamp) - interval {days} day as since
                from weather.temperature_actuals)
select a.timestamp as hour, a.temperature_c as actual_c, p.predicted_c, p.model_version
from weather.temperature_actuals a
left join weather.temperature_predictions p on p.target_hour = a.timestamp
where a.timestamp >= (select since from bounds)
union all
select p.target_hour, null, p.predicted_c, p.model_version
from weather.temperature_predictions p
where p.target_hour > (select max(timestamp) from weather.temperature_actuals)
order by 1
"""
ACCURACY_SQL = """
select target_hour, squared_error, mse_24h, hours_24h, mse_7d, hours_7d, model_version
from weather.temperature_accuracy
where target_hour >= (select max(target_hour) - interval {days} day
                      from weather.temperature_accuracy)
order by target_hour
"""
MODEL_SQL = """
select model_version, made_at from weather.temperature_predictions
order by made_at desc limit 1
"""


def _utc(value: Any) -> Any:
    """Times in UTC: DuckDB hands TIMESTAMP back naive (the warehouse stores UTC) and
    TIMESTAMPTZ in the session's zone."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    """Rows as dicts; a table not created yet (fresh platform) is no rows, not an error."""
    try:
        cursor = conn.execute(sql)
    except duckdb.CatalogException:
        return []
    names = [d[0] for d in cursor.description]
    return [{n: _utc(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of everything the pages show."""

    read_at: datetime | None = None  # when the warehouse was read (None: never yet)
    rain: list[dict[str, Any]] = field(default_factory=list)
    temperature: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    model_version: str | None = None
    model_made_at: datetime | None = None

    @property
    def rain_as_of(self) -> datetime | None:
        return self.rain[0]["window_start"] if self.rain else None

    def rain_age_seconds(self, now: datetime) -> float | None:
        as_of = self.rain_as_of
        return None if as_of is None else max(0.0, (now - as_of).total_seconds())

    def rain_stale(self, now: datetime) -> bool:
        age = self.rain_age_seconds(now)
        return age is None or age > RAIN_STALE_AFTER.total_seconds()


def read_snapshot(
    warehouse_path: str | Path,
    names: dict[str, str],
    *,
    attempts: int = 8,
    delay_s: float = 0.25,
    now: datetime | None = None,
) -> Snapshot:
    """Everything the pages need, in one read-only connection (retried while locked)."""
    with read_only_connection(warehouse_path, attempts=attempts, delay_s=delay_s) as conn:
        rain = _rows(conn, LATEST_SQL)
        temperature = _rows(conn, TEMPERATURE_SQL.format(days=TEMPERATURE_DAYS))
        accuracy = _rows(conn, ACCURACY_SQL.format(days=TEMPERATURE_DAYS))
        model = _rows(conn, MODEL_SQL)
    for row in rain:
        row["name"] = names.get(row["location_id"], row["location_id"])
    return Snapshot(
        read_at=now or clock.utcnow(),
        rain=rain,
        temperature=temperature,
        accuracy=accuracy,
        model_version=model[0]["model_version"] if model else None,
        model_made_at=model[0]["made_at"] if model else None,
    )


class SnapshotHolder:
    """The current snapshot plus a refresher thread; requests only ever read ``current``."""

    def __init__(
        self,
        warehouse_path: str | Path,
        locations_file: str | Path | None = None,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        realtime: RealtimeRain | None = None,
    ) -> None:
        self.warehouse_path = Path(warehouse_path)
        self.realtime = realtime
        self.locations_file = locations_file
        self.refresh_seconds = refresh_seconds
        self.current = Snapshot()
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.refreshes = 0
        self._names: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _location_names(self) -> dict[str, str]:
        if self._names is None:
            try:
                locations = load_locations(self.locations_file) if self.locations_file else []
            except (OSError, LocationsError) as exc:
                log.warning("location names unavailable (%s); showing ids", exc)
                locations = []
            self._names = {loc.location_id: loc.name for loc in locations}
        return self._names

    def rain(self) -> tuple[list[dict[str, Any]], str]:
        """The rain rows to show and where they come from: the stream's real-time view when it
        is connected and at least as new as the warehouse, the warehouse otherwise."""
        warehouse = self.current.rain
        live = self.realtime.rows() if self.realtime is not None else []
        if live:
            live_as_of = max(row["window_start"] for row in live)
            if not warehouse or live_as_of >= warehouse[0]["window_start"]:
                names = self._location_names()
                for row in live:
                    row["name"] = names.get(row["location_id"], row["location_id"])
                return live, REALTIME_SOURCE
        return warehouse, WAREHOUSE_SOURCE

    def refresh(self) -> bool:
        """Read the warehouse once; keep the old snapshot (and record why) on failure."""
        try:
            snapshot = read_snapshot(self.warehouse_path, self._location_names())
        except (duckdb.Error, OSError) as exc:
            # FileNotFoundError (nothing materialized yet) included: not worth a traceback.
            self._failed(exc, traceback=False)
            return False
        except Exception as exc:  # polars, S3, a bug: anything, the dashboard keeps going
            self._failed(exc, traceback=True)
            return False
        self.current = snapshot
        self.last_error = None
        self.refreshes += 1
        return True

    def _failed(self, exc: BaseException, *, traceback: bool) -> None:
        """A generic reason for the pages, the exception itself for the log."""
        if isinstance(exc, FileNotFoundError):
            public = NO_WAREHOUSE
        elif isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            public = WAREHOUSE_BUSY
        else:
            public = READ_FAILED
        self.last_error, self.last_error_at = public, clock.utcnow()
        log.warning(
            "dashboard: warehouse read failed, keeping the previous data: %s: %s",
            type(exc).__name__,
            exc,
            exc_info=exc if traceback else None,
        )

    def _refresh_surviving(self) -> None:
        """``refresh``, outliving any exception but an exit: the next tick tries again."""
        try:
            self.refresh()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._failed(exc, traceback=True)

    def start(self) -> None:
        """Refresh now (best effort), then every ``refresh_seconds`` in a daemon thread."""
        if self.realtime is not None:
            self.realtime.start()
        self._refresh_surviving()
        self._thread = threading.Thread(target=self._loop, name="dashboard-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            started = time.perf_counter()
            self._refresh_surviving()
            log.debug("dashboard refresh took %.3f s", time.perf_counter() - started)

    def stop(self) -> None:
        if self.realtime is not None:
            self.realtime.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or clock.utcnow()
        snap = self.current
        rows, source = self.rain()
        as_of = max((row["window_start"] for row in rows), default=None)
        age = None if as_of is None else max(0.0, (now - as_of).total_seconds())
        return {
            "warehouse_read_at": snap.read_at,
            "warehouse_read_age_seconds": None
            if snap.read_at is None
            else round((now - snap.read_at).total_seconds(), 1),
            "rain_as_of": as_of,
            "rain_age_seconds": age,
            "rain_stale": age is None or age > RAIN_STALE_AFTER.total_seconds(),
            "rain_source": source,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }
