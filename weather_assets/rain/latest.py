"""Print the latest next-hour rain per coordinate: ``python -m weather_assets.rain.latest``.

Reads the rain stream's real-time view (seconds old) when the log is reachable, else the
warehouse read-only (retrying while a run holds the write lock), so it is safe to call while
Dagster is materializing.
"""

from __future__ import annotations

import sys

import duckdb
from nats.errors import Error as NatsError

from resources.jetstream import LogUnavailable, nats_url_from, run_sync
from resources.settings import dotenv_environ, load_settings
from resources.warehouse import read_only_connection
from weather_assets.rain.stream.realtime import read_realtime, realtime_rows

LATEST_SQL = """
select s.location_id, s.lat, s.lon, s.window_start, s.next_hour_precipitation_mm,
       s.minutes_covered
from weather.rolling_precipitation_sum s
where s.window_start = (select max(window_start) from weather.rolling_precipitation_sum)
order by s.location_id = 'office' desc, s.next_hour_precipitation_mm desc nulls last,
         s.location_id
"""


def latest_rows(warehouse_path) -> list[tuple]:
    with read_only_connection(warehouse_path) as conn:
        try:
            return conn.execute(LATEST_SQL).fetchall()
        except duckdb.CatalogException:
            return []


def realtime_latest(url: str) -> list[tuple]:
    """The real-time view as ``LATEST_SQL`` rows; ``[]`` when the log has none."""
    entries = run_sync(url, read_realtime, timeout_s=1.0)
    return [
        (
            r["location_id"],
            r["lat"],
            r["lon"],
            r["window_start"],
            r["next_hour_precipitation_mm"],
            r["minutes_covered"],
        )
        for r in realtime_rows(entries)
    ]


def render(rows: list[tuple], source: str = "warehouse") -> str:
    if not rows:
        return "no next-hour totals yet: materialize rolling_precipitation_sum first"
    newest = max(row[3] for row in rows)
    lines = [
        f"next-hour rain for the window starting {newest:%Y-%m-%d %H:%M} UTC (from the {source})",
        f"{'location':<16} {'lat':>9} {'lon':>10} {'mm':>7} {'minutes':>7}",
    ]
    for location_id, lat, lon, _, total, minutes in rows:
        amount = "   n/a" if total is None else f"{total:7.2f}"
        lines.append(f"{location_id:<16} {lat:9.4f} {lon:10.4f} {amount:>7} {minutes:>7}")
    return "\n".join(lines)


def main() -> int:
    settings = load_settings()
    try:
        rows = realtime_latest(nats_url_from(settings))
    except (LogUnavailable, NatsError, TimeoutError) as exc:  # no log or no view yet
        print(
            f"real-time view unavailable ({type(exc).__name__}); reading the warehouse",
            file=sys.stderr,
        )
        rows = []
    if rows:
        print(render(rows, "stream's real-time view"))
        return 0
    try:
        rows = latest_rows(settings.warehouse_path)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(render(rows))
    return 0


if __name__ == "__main__":
    # .env loaded as the dagster commands beside this one load it (resources.settings).
    with dotenv_environ():
        raise SystemExit(main())
