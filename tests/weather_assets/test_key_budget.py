"""One OpenWeatherMap budget per key for every process: the rain fetch, the station polls and
``timemachine`` calls, in separate OS processes, never exceed the key's limit at the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest

from resources.settings import load_settings
from resources.source import SourceConfig
from weather_assets.locations import Location, shard_locations
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.stations.feed import StationFeed

REPO = Path(__file__).resolve().parents[2]
LIMIT = 20  # the key's calls per minute, small so that two minutes prove the throttling
DURATION_S = 120.0
WINDOW_S = 60.0


class CountingOneCall:
    """A local One Call server: answers nowcasts, current weather and timemachine, and keeps
    the arrival time of every request per key (``appid``)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.paths: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                now = time.monotonic()
                url = urlsplit(self.path)
                key = parse_qs(url.query).get("appid", [""])[0]
                with counter._lock:
                    counter.arrivals[key].append(now)
                    counter.paths[url.path] += 1
                dt = int(time.time())
                weather = {"dt": dt, "temp": 5.0, "humidity": 80, "pressure": 1010}
                body = json.dumps(
                    {
                        "lat": 52.0,
                        "lon": 4.3,
                        "current": weather,
                        "data": [weather],
                        "minutely": [
                            {"dt": dt - dt % 60 + 60 * i, "precipitation": 0.0} for i in range(61)
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def busiest_minute(self, key: str) -> int:
        """The most requests of ``key`` that arrived within any rolling minute."""
        times = sorted(self.arrivals[key])
        busiest, first = 0, 0
        for last, now in enumerate(times):
            while times[first] <= now - WINDOW_S:
                first += 1
            busiest = max(busiest, last - first + 1)
        return busiest


@pytest.fixture
def one_call():
    server = CountingOneCall()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.mark.integration
def test_processes_sharing_one_key_never_exceed_its_limit(one_call, tmp_path):
    """Two rain fetchers, a station poller and a timemachine caller, each an OS process with its
    own clients, for two minutes: the server never sees more than LIMIT calls in a minute."""
    store = str(tmp_path / "rate_limits.sqlite")
    start = time.time() + 15  # every process imported and waiting
    kinds = ["rain", "rain", "poll", "history"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [one_call.url, "shared-key", store, str(LIMIT), str(start), str(DURATION_S)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.weather_assets.key_budget_worker", kind, *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in kinds
    ]
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=DURATION_S + 15 + WINDOW_S + 30)
            assert worker.returncode == 0, err[-3000:]
            outputs.append(int(out.split()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    total = len(one_call.arrivals["shared-key"])
    assert list(one_call.arrivals) == ["shared-key"]
    assert one_call.busiest_minute("shared-key") == LIMIT, one_call.arrivals
    assert total >= 2 * LIMIT, "two minutes of calls: at least two windows' worth"
    assert all(made > 0 for made in outputs), dict(zip(kinds, outputs, strict=True))
    assert one_call.paths["/data/3.0/onecall/timemachine"] > 0
    assert one_call.paths["/data/3.0/onecall"] > 0


def test_station_feed_polls_with_only_the_keys_list(one_call, tmp_path):
    """OPENWEATHERMAP_API_KEYS alone: the feed polls with those keys, station i on key i mod n,
    from the same budgets as the rain fetch."""
    stations = [Location(f"s{i}", f"S{i}", 50.0 + i, 5.0) for i in range(3)]
    store = str(tmp_path / "rate_limits.sqlite")
    feed = StationFeed(
        source=SourceConfig(mode="live"), stations="s0,s1,s2", api_keys="k1, k2",
        base_url=one_call.url, calls_per_minute=2, rate_limit_file=store,
    )  # fmt: skip
    frame = feed.poll_current(stations)
    assert frame["station_id"].to_list() == ["s0", "s1", "s2"]
    assert {k: len(v) for k, v in one_call.arrivals.items()} == {"k1": 2, "k2": 1}
    rain = OpenWeatherMapResource(
        source=SourceConfig(mode="live"), api_keys="k1,k2", base_url=one_call.url,
        calls_per_minute=2, rate_limit_file=store,
    )  # fmt: skip
    k1, k2 = (c._http.rate_limiter for c in rain.clients_for(2, clock=lambda: datetime.now(UTC)))
    assert not k1.try_acquire(), "the polls spent key k1's two calls"
    assert k2.try_acquire() and not k2.try_acquire()


def test_platform_station_feed_gets_the_keys_list(monkeypatch, tmp_path):
    import definitions

    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OPENWEATHERMAP_API_KEY", raising=False)
    monkeypatch.setenv("OPENWEATHERMAP_API_KEYS", "k1,k2")
    resources = definitions.source_resources(load_settings())
    feed, owm = resources["station_feed"], resources["openweathermap"]
    assert isinstance(feed.api_keys, dg.EnvVar) and feed.api_keys.env_var_name == (
        "OPENWEATHERMAP_API_KEYS"
    )
    expected = str(tmp_path / "rate_limits.sqlite")
    assert feed.rate_limit_file == owm.rate_limit_file == expected
    assert resources["nasa_library"].rate_limit_file == expected
    assert owm.station_calls_per_minute == 5  # the default OBSERVATION_STATIONS


def test_shards_leave_room_for_the_station_polls():
    live = SourceConfig(mode="live")
    locations = [Location(f"p{i}", f"P{i}", 50.0, 5.0 + i / 100) for i in range(60)]
    one_key = OpenWeatherMapResource(source=live, api_key="k", station_calls_per_minute=5)
    assert one_key.shard_size() == 60 - 5 - 1
    shards = shard_locations(locations, one_key.shard_size())
    with pytest.raises(dg.Failure, match=r"2 shards of up to 54 coordinates need 2 API keys but 1"):
        one_key.clients_for(len(shards), clock=lambda: datetime.now(UTC))
    two_keys = OpenWeatherMapResource(source=live, api_keys="a,b", station_calls_per_minute=5)
    assert two_keys.shard_size() == 60 - 3 - 1, "the polls spread over both keys"
    assert len(two_keys.clients_for(2, clock=lambda: datetime.now(UTC))) == 2
    assert OpenWeatherMapResource(station_calls_per_minute=5).shard_size() == 60, "simulated"
    tiny = OpenWeatherMapResource(
        source=live, api_key="k", calls_per_minute=6, station_calls_per_minute=5
    )
    with pytest.raises(dg.Failure, match="no rain calls fit in a key"):
        tiny.shard_size()
