"""Filling the rain log the way producers do, and reading back what the processor made of it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import polars as pl

from resources.jetstream import run_sync
from weather_assets.locations import Location, shard_locations
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.stream.log import (
    MINUTES,
    PROCESSOR,
    STREAM,
    LogConfig,
    ensure_log,
    minute_kv_key,
)
from weather_assets.rain.stream.messages import latest_per_coordinate, parse_messages
from weather_assets.rain.stream.minute_fetch import FetchedMinute, fetch_minute, publish
from weather_assets.rain.stream.progress import MinuteProgress
from weather_assets.rain.stream.realtime import read_realtime

ANSWER_DELAY = timedelta(seconds=5)


def test_locations(n: int) -> list[Location]:
    """``n`` coordinates spread over the globe (the simulator rains on some of them)."""
    return [
        Location(
            f"loc{i:03d}",
            f"loc {i}",
            round(-50 + 97.3 * i % 100, 4),
            round(-170 + 211.7 * i % 340, 4),
        )
        for i in range(n)
    ]


test_locations.__test__ = False  # a helper, not a test


def past_minute(minutes_ago: int) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)


def fetch(minute: datetime, locations: list[Location], shard_size: int) -> FetchedMinute:
    """The producer code path (simulated client, one shard per ``shard_size`` coordinates)."""
    owm = OpenWeatherMapResource(calls_per_minute=shard_size, max_workers=4)
    shards = dict(enumerate(shard_locations(locations, shard_size)))
    return fetch_minute(
        owm, shards, len(shards), minute, producer="test", now=lambda: minute + ANSWER_DELAY
    )


def ensure_stream(url: str) -> None:
    """The stream and its buckets, as ``make run`` creates them (idempotent)."""

    async def ensure(js):
        await ensure_log(js, LogConfig(url))

    run_sync(url, ensure)


def publish_minute(url: str, minute: datetime, locations: list[Location], shard_size: int):
    fetched = fetch(minute, locations, shard_size)
    ensure_stream(url)
    report = run_sync(url, lambda js: publish(js, fetched.messages))
    return fetched, report


def expected_rows(fetched: FetchedMinute) -> pl.DataFrame:
    """What ``parse_messages`` run in-process makes of a minute's messages: the numbers the
    processor must reproduce."""
    return latest_per_coordinate(parse_messages(fetched.raw()))


def publish_raw(url: str, messages: list[tuple[str, bytes, str]]) -> list[int]:
    """``(subject, data, Nats-Msg-Id)`` straight into the stream; their sequences."""

    async def send(js):
        acks = [await js.publish(s, d, headers={"Nats-Msg-Id": i}) for s, d, i in messages]
        return [a.seq for a in acks]

    return run_sync(url, send)


def stream_last_seq(url: str) -> int:
    async def last(js):
        return (await js.stream_info(STREAM)).state.last_seq

    return run_sync(url, last)


def processor_state(url: str) -> dict | None:
    async def get(js):
        try:
            entry = await (await js.key_value(PROCESSOR)).get("state")
        except Exception:
            return None
        return json.loads(entry.value) if entry.value else None

    return run_sync(url, get)


def minute_progress(url: str, minute: datetime) -> MinuteProgress | None:
    async def get(js):
        try:
            entry = await (await js.key_value(MINUTES)).get(minute_kv_key(minute))
        except Exception:
            return None
        return MinuteProgress.from_json(entry.value)

    return run_sync(url, get)


def realtime(url: str) -> list[dict]:
    return run_sync(url, lambda js: read_realtime(js, timeout_s=2.0))


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # the log restarting, a file being written
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def caught_up(url: str) -> Callable[[], bool]:
    """True once the processor's state has reached the stream's last message."""

    def check() -> bool:
        state = processor_state(url)
        return bool(state) and state["last_seq"] == stream_last_seq(url)

    return check
