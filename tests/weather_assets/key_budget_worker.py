"""One OS process spending an OpenWeatherMap key, for ``test_key_budget.py`` (not a test).

``python -m tests.weather_assets.key_budget_worker KIND BASE_URL KEYS STORE CALLS START DURATION``
calls the API as fast as its limiter lets it from ``START`` (epoch seconds) for ``DURATION``
seconds, through the platform's own clients: ``rain`` (the nowcast fetch), ``poll`` (the
station feed's live poll) or ``history`` (the station feed's ``timemachine`` calls).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.stations.feed import StationFeed

STATION = Location("office", "Office", 52.0, 4.3)


def caller(kind: str, base_url: str, keys: str, store: str, calls: int):
    live = SourceConfig(mode="live")
    if kind == "rain":
        owm = OpenWeatherMapResource(
            source=live, api_keys=keys, base_url=base_url, calls_per_minute=calls,
            rate_limit_file=store, max_attempts=1,
        )  # fmt: skip
        client = owm.clients_for(1, clock=lambda: datetime.now(UTC))[0]
        return lambda: client.minutely(STATION.lat, STATION.lon)
    feed = StationFeed(
        source=live, stations="office", api_keys=keys, base_url=base_url,
        calls_per_minute=calls, rate_limit_file=store,
    )  # fmt: skip
    if kind == "poll":
        return lambda: feed.poll_current([STATION])
    hour = datetime(2026, 12, 1, tzinfo=UTC)
    return lambda: feed.readings([STATION], hour, hour + timedelta(hours=2))


def main(argv: list[str]) -> int:
    kind, base_url, keys, store, calls, start, duration = argv
    call = caller(kind, base_url, keys, store, int(calls))
    start_at, stop_at = float(start), float(start) + float(duration)
    time.sleep(max(0.0, start_at - time.time()))
    made = 0
    while time.time() < stop_at:
        call()
        made += 1
    print(made, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
