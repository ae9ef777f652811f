"""Producer throughput: One Call calls per second through the producer code path, per process.

    .venv/bin/python benchmarks/rain_producer.py [--coordinates 3000] [--latency-ms 50]

Three figures, each one minute's fetch of --coordinates coordinates through ``fetch_minute``
(the real client: HttpClient, retries, parsing, one message per coordinate), rate limit lifted:
  simulator      the in-process simulator (SOURCE_MODE=simulated), then publishing the messages
                 to an embedded nats-server (acks awaited, PUBLISH_WINDOW in flight)
  http 50 ms     live mode against a local HTTP server answering like One Call after
                 --latency-ms, with the resource's default thread pool (max_workers 16) and 64
The one-minute budget is 60 s: calls/s x 60 is how many coordinates one producer keeps up with
(the API key's own limit aside).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from resources.jetstream import EmbeddedServer, jetstream
from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.simulator import onecall_json
from weather_assets.rain.stream.log import LogConfig, ensure_log
from weather_assets.rain.stream.minute_fetch import fetch_minute, publish


def locations(n: int) -> list[Location]:
    rng = np.random.default_rng(7)
    lats = rng.uniform(-60, 70, n)
    lons = rng.uniform(-180, 180, n)
    return [
        Location(f"c{i:06d}", f"c{i}", float(a), float(o))
        for i, (a, o) in enumerate(zip(lats, lons, strict=True))
    ]


def slow_onecall_server(latency_s: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            query = parse_qs(urlsplit(self.path).query)
            time.sleep(latency_s)
            body = onecall_json(
                float(query["lat"][0]), float(query["lon"][0]), datetime.now(UTC), seed=1
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def timed_fetch(resource: OpenWeatherMapResource, coords: list[Location]) -> tuple[float, object]:
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.perf_counter()
    fetched = fetch_minute(resource, {0: coords}, 1, minute, producer="bench")
    seconds = time.perf_counter() - started
    failed = len(fetched.failed)
    if failed:
        print(f"  ({failed} calls failed)")
    return seconds, fetched


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinates", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    coords = locations(args.coordinates)
    n = len(coords)

    simulated = OpenWeatherMapResource(calls_per_minute=n)
    seconds, fetched = timed_fetch(simulated, coords)
    print(f"simulator: {n} calls in {seconds:.2f} s = {n / seconds:,.0f} calls/s")

    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(14321, Path(tmp)) as server:

        async def send():
            async with jetstream(server.url) as (_, js):
                await ensure_log(js, LogConfig(server.url))
                started = time.perf_counter()
                report = await publish(js, fetched.messages)
                return report, time.perf_counter() - started

        report, seconds = asyncio.run(send())
        size = sum(len(m.data) for m in fetched.messages) / len(fetched.messages)
        print(
            f"publish: {report.published} messages (avg {size:,.0f} B) in {seconds:.2f} s = "
            f"{report.published / seconds:,.0f} msg/s"
        )

    http = slow_onecall_server(args.latency_ms / 1000)
    base_url = f"http://127.0.0.1:{http.server_address[1]}"
    for workers in (16, 64):
        live = OpenWeatherMapResource(
            source=SourceConfig(mode="live"),
            base_url=base_url,
            api_key="bench-key",
            calls_per_minute=n,
            max_workers=workers,
        )
        subset = coords[: min(n, 2000)]
        seconds, _ = timed_fetch(live, subset)
        print(
            f"http {args.latency_ms:.0f} ms, {workers} workers: {len(subset)} calls in "
            f"{seconds:.2f} s = {len(subset) / seconds:,.0f} calls/s "
            f"(~{len(subset) / seconds * 60:,.0f} coordinates per minute per producer)"
        )
    http.shutdown()


if __name__ == "__main__":
    main()
