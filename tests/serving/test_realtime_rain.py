"""/rain and `make rain` read the rain stream's real-time view (a JetStream KV watch), and fall
back to the warehouse when the log is not reachable. Against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from resources.jetstream import jetstream
from serving.realtime_rain import RealtimeRain
from serving.warehouse_snapshot import REALTIME_SOURCE, WAREHOUSE_SOURCE, SnapshotHolder
from weather_assets.rain import latest
from weather_assets.rain.stream.log import LogConfig, ensure_log
from weather_assets.rain.stream.messages import NOWCAST, PARSED_SCHEMA
from weather_assets.rain.stream.realtime import put_realtime, realtime_entries

MINUTE = datetime(2026, 12, 5, 11, 3, tzinfo=UTC)


def parsed(minute: datetime, totals: dict[str, float | None]) -> pl.DataFrame:
    naive = minute.replace(tzinfo=None)
    rows = [
        {
            "seq": i + 1,
            "kind": NOWCAST,
            "minute": naive,
            "location_id": location_id,
            "lat": 52.0 + i,
            "lon": 5.0,
            "answered_at": naive + timedelta(seconds=2),
            "next_hour_precipitation_mm": total,
            "minutes_covered": 0 if total is None else 60,
        }
        for i, (location_id, total) in enumerate(totals.items())
    ]
    return pl.DataFrame(rows).with_columns(
        [pl.lit(None, dtype=t).alias(n) for n, t in PARSED_SCHEMA.items() if n not in rows[0]]
    )


def put(url: str, frame: pl.DataFrame) -> None:
    async def main():
        async with jetstream(url) as (_, js):
            await ensure_log(js, LogConfig(url))
            await put_realtime(js, realtime_entries(frame, MINUTE + timedelta(seconds=3)))

    asyncio.run(main())


def wait_for(predicate, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_entries_are_ordered_like_the_warehouse_rows():
    frame = parsed(MINUTE, {"b": 1.0, "office": 0.0, "a": 1.0, "dry": 0.0, "none": None})
    entries = [json.loads(v) for _, v in realtime_entries(frame, MINUTE)]
    from weather_assets.rain.stream.realtime import realtime_rows

    assert [r["location_id"] for r in realtime_rows(entries)] == ["office", "a", "b", "dry", "none"]


def test_the_newest_minute_wins_and_a_later_copy_changes_nothing():
    older = parsed(MINUTE, {"office": 5.0})
    newer = parsed(MINUTE + timedelta(minutes=1), {"office": 1.0}).with_columns(
        seq=pl.lit(9, dtype=pl.Int64)
    )
    copy = newer.with_columns(
        seq=pl.lit(10, dtype=pl.Int64), next_hour_precipitation_mm=pl.lit(99.0)
    )
    entries = realtime_entries(pl.concat([older, newer, copy]), MINUTE)
    assert len(entries) == 1
    value = json.loads(entries[0][1])
    assert value["next_hour_precipitation_mm"] == 1.0
    assert value["minute"] == int((MINUTE + timedelta(minutes=1)).timestamp())


def test_rain_follows_the_real_time_view_and_falls_back_to_the_warehouse(nats_server, platform_env):
    put(nats_server.url, parsed(MINUTE, {"office": 0.5, "amsterdam": 2.0}))
    view = RealtimeRain(nats_server.url, retry_seconds=0.2)
    holder = SnapshotHolder(platform_env / "missing.duckdb", realtime=view)
    holder.start()
    try:
        rows = wait_for(lambda: holder.rain()[0])
        assert holder.rain()[1] == REALTIME_SOURCE
        assert [(r["location_id"], r["next_hour_precipitation_mm"]) for r in rows] == [
            ("office", 0.5),
            ("amsterdam", 2.0),
        ]
        assert holder.status(now=MINUTE + timedelta(seconds=30))["rain_source"] == REALTIME_SOURCE
        # A new total arrives through the watch, with no polling of the bucket.
        put(nats_server.url, parsed(MINUTE + timedelta(minutes=1), {"office": 3.25}))
        wait_for(lambda: holder.rain()[0][0]["next_hour_precipitation_mm"] == 3.25)
        # The log goes away: the warehouse (empty here) is what is shown.
        nats_server.stop()
        wait_for(lambda: holder.rain()[1] == WAREHOUSE_SOURCE)
        assert view.last_error
        # ... and comes back: the view is followed again.
        nats_server.start()
        wait_for(lambda: holder.rain()[1] == REALTIME_SOURCE, timeout_s=30)
    finally:
        holder.stop()


def test_make_rain_prints_the_real_time_view(nats_server, platform_env, capsys):
    put(nats_server.url, parsed(MINUTE, {"office": 0.5}))
    assert latest.main() == 0
    out = capsys.readouterr().out
    assert "from the stream's real-time view" in out and "office" in out and "0.50" in out


def test_make_rain_without_a_log_reads_the_warehouse(platform_env, capsys):
    assert latest.main() == 1  # no warehouse yet either: says so
    captured = capsys.readouterr()
    assert "real-time view unavailable" in captured.err


@pytest.mark.parametrize("entries", [[]])
def test_an_empty_view_shows_the_warehouse(nats_server, platform_env, entries):
    put(nats_server.url, parsed(MINUTE, {"office": 0.5}).head(0))
    view = RealtimeRain(nats_server.url)
    holder = SnapshotHolder(platform_env / "missing.duckdb", realtime=view)
    holder.start()
    try:
        wait_for(lambda: view.caught_up)
        assert holder.rain() == ([], WAREHOUSE_SOURCE)
    finally:
        holder.stop()


class _NotAnExit(BaseException):
    """A BaseException that is not SystemExit/KeyboardInterrupt (e.g. a library's own)."""


def test_the_watch_thread_survives_any_exception(monkeypatch):
    """A failed watch (any exception but an exit) marks the view unavailable and is retried."""
    calls: list[int] = []
    retried = threading.Event()

    async def failing_watch(self) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise _NotAnExit("odd")
        if len(calls) == 2:
            raise RuntimeError("boom")
        retried.set()

    monkeypatch.setattr(RealtimeRain, "_watch", failing_watch)
    view = RealtimeRain("nats://127.0.0.1:1", retry_seconds=0.01)
    view.start()
    try:
        assert retried.wait(5), f"the watch thread died after {len(calls)} attempt(s)"
        assert view._thread.is_alive()
    finally:
        view.stop()
