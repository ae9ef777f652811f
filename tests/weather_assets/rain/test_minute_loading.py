"""Where a minute's rows come from, in order: processor output, the log, fetched on demand.

A fake log and a local object store; the messages are real (``fetch_minute`` against the
simulator), so every path parses the same bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from resources.object_store import ObjectStore
from weather_assets.locations import Location, shard_locations
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.loading import (
    FETCHED,
    FROM_LOG,
    PROCESSOR_OUTPUT,
    MinuteLoader,
    MinuteUnavailable,
    archive_lines,
    completeness_text,
    redact_url,
    sources_text,
    stream_lag,
    summarize,
)
from weather_assets.rain.stream import minute_store
from weather_assets.rain.stream.messages import forecast_rows, parse_messages, raw_frame
from weather_assets.rain.stream.minute_fetch import PublishReport, fetch_minute
from weather_assets.rain.stream.minute_log import ProcessorState, StreamStatus
from weather_assets.rain.stream.progress import MinuteProgress

NOW = datetime(2026, 11, 22, 16, 5, 42, tzinfo=UTC)
MINUTE = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
LOCATIONS = [Location(f"loc{i}", f"Place {i}", 40.0 + i, -3.0 + i) for i in range(6)]
SHARDS = shard_locations(LOCATIONS, 2)  # three shards of two
GRACE = timedelta(seconds=90)


def fetch(minute: datetime, shards=None):
    owm = OpenWeatherMapResource(calls_per_minute=2)
    chosen = dict(enumerate(SHARDS)) if shards is None else {i: SHARDS[i] for i in shards}
    return fetch_minute(owm, chosen, len(SHARDS), minute, producer="test", now=lambda: minute)


class FakeLog:
    def __init__(self, held=None, *, reachable: bool = True):
        self.held = dict(held or {})
        self.reachable = reachable
        self.reads: list[datetime] = []
        self.published: list = []

    @property
    def unreachable(self) -> str | None:
        return None if self.reachable else "NATS at nats://127.0.0.1:1 is not reachable"

    def read(self, minute):
        if not self.reachable:
            return None
        self.reads.append(minute)
        return self.held.get(minute, raw_frame([]))

    def publish(self, messages):
        if not self.reachable:
            return None
        self.published.extend(messages)
        return PublishReport(len(messages), 0, 1, len(messages))


class Fetcher:
    def __init__(self):
        self.calls: list[datetime] = []

    def __call__(self, minute):
        self.calls.append(minute)
        return fetch(minute)


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    return ObjectStore(local_dir=str(tmp_path / "objects"))


def loader(store, log, fetcher=None, *, live=False, max_age_hours=48):
    return MinuteLoader(
        store=store,
        log=log,
        fetch=fetcher or Fetcher(),
        live=live,
        log_max_age=timedelta(hours=max_age_hours),
        now=lambda: NOW,
    )


def totals(loaded) -> pl.DataFrame:
    return forecast_rows(loaded.parsed, loaded.minute, LOCATIONS)


def test_processor_output_comes_first(store):
    fetched = fetch(MINUTE)
    minute_store.write_batch(store, 0, parse_messages(fetched.raw()))
    log, fetcher = FakeLog({MINUTE: fetched.raw()}), Fetcher()
    loaded = loader(store, log, fetcher).load(MINUTE)
    assert loaded.source == PROCESSOR_OUTPUT
    assert log.reads == [] and fetcher.calls == [], "a complete minute needs nothing else"
    assert totals(loaded).equals(forecast_rows(parse_messages(fetched.raw()), MINUTE, LOCATIONS))


def test_then_the_log(store):
    fetched = fetch(MINUTE)
    log, fetcher = FakeLog({MINUTE: fetched.raw()}), Fetcher()
    loaded = loader(store, log, fetcher).load(MINUTE)
    assert loaded.source == FROM_LOG and fetcher.calls == [] and log.published == []
    assert loaded.progress().complete


def test_then_fetched_on_demand_and_published_to_a_reachable_log(store):
    log, fetcher = FakeLog(), Fetcher()
    loaded = loader(store, log, fetcher).load(MINUTE)
    assert loaded.source == FETCHED and fetcher.calls == [MINUTE]
    assert [m.msg_id for m in log.published] == [m.msg_id for m in loaded.fetched.messages]
    assert loaded.published == f"{len(log.published)} published, 0 already in the log"
    from_log = loader(store, FakeLog({MINUTE: fetch(MINUTE).raw()})).load(MINUTE)
    assert totals(loaded).equals(totals(from_log)), "same numbers either way"


def test_without_a_log_fetched_directly(store):
    loaded = loader(store, FakeLog(reachable=False)).load(MINUTE)
    assert loaded.source == FETCHED
    assert loaded.published.startswith("not published: NATS at")


def test_incomplete_processor_output_gives_way_to_a_fuller_log(store):
    minute_store.write_batch(store, 0, parse_messages(fetch(MINUTE, shards=[0]).raw()))
    full = fetch(MINUTE).raw()
    loaded = loader(store, FakeLog({MINUTE: full})).load(MINUTE)
    assert loaded.source == FROM_LOG and loaded.notes
    alone = loader(store, FakeLog(reachable=False)).load(MINUTE)
    assert alone.source == PROCESSOR_OUTPUT and alone.progress().missing_shards == [1, 2]


def test_live_mode_fetches_only_the_minute_in_progress(store):
    now_minute = NOW.replace(second=0)
    fetcher = Fetcher()
    assert loader(store, FakeLog(), fetcher, live=True).load(now_minute).source == FETCHED
    with pytest.raises(MinuteUnavailable) as stale:
        loader(store, FakeLog(), fetcher, live=True).load(MINUTE)
    message = str(stale.value)
    assert "35 minutes old" in message and "live mode cannot fetch it" in message
    assert "older than what the log holds" in message
    assert "neither the stream processor's output nor the log holds it" in message
    with pytest.raises(MinuteUnavailable, match=r"the log is not reachable \(NATS at"):
        loader(store, FakeLog(reachable=False), live=True).load(MINUTE)
    assert fetcher.calls == [now_minute]


def test_live_mode_refuses_a_fetch_whose_answers_the_parser_would_reject(store):
    # 2 min 42 s after the minute started: within stale_minute_error's 2 minutes, but the
    # answers would be more than MAX_ANSWER_DELAY late, dead letters for the processor too.
    two_ago = NOW.replace(second=0) - timedelta(minutes=2)
    with pytest.raises(MinuteUnavailable, match="started 162 s ago: an answer fetched now"):
        loader(store, FakeLog(), live=True).load(two_ago)
    one_ago = NOW.replace(second=0) - timedelta(minutes=1)
    assert loader(store, FakeLog(), live=True).load(one_ago).source == FETCHED


def test_live_mode_past_the_logs_retention_says_so(store):
    old = NOW.replace(second=0) - timedelta(hours=3)
    with pytest.raises(MinuteUnavailable) as refused:
        loader(store, FakeLog(), live=True, max_age_hours=2).load(old)
    assert "older than the log's retention (2 h, RAIN_STREAM_MAX_AGE_HOURS)" in str(refused.value)
    # Simulated mode backfills any minute, on the partition minute's clock.
    assert loader(store, FakeLog(), max_age_hours=2).load(old).source == FETCHED


def test_live_mode_still_loads_a_past_minute_the_stream_holds(store):
    loaded = loader(store, FakeLog({MINUTE: fetch(MINUTE).raw()}), live=True).load(MINUTE)
    assert loaded.source == FROM_LOG


def test_a_missing_shard_keeps_null_rows_and_is_named(store):
    minute_store.write_batch(store, 0, parse_messages(fetch(MINUTE, shards=[0, 2]).raw()))
    loaded = loader(store, FakeLog(reachable=False)).load(MINUTE)
    summary = summarize(loaded, LOCATIONS, NOW, GRACE)
    assert summary.missing_ids == ["loc2", "loc3"]
    assert summary.completeness == "shards 1 of 3 missing after the grace period"
    rows = totals(loaded)
    assert rows.filter(pl.col("location_id").is_in(["loc2", "loc3"]))["forecast_at"].to_list() == [
        None,
        None,
    ]
    assert set(rows["location_id"]) == {loc.location_id for loc in LOCATIONS}


def test_completeness_before_and_after_the_grace_period():
    progress = MinuteProgress(MINUTE, 3, frozenset({0, 2}))
    early = MINUTE + timedelta(seconds=100)
    assert "before the grace period ended" in completeness_text(progress, MINUTE, early, GRACE)
    late = MINUTE + timedelta(seconds=150)
    assert completeness_text(progress, MINUTE, late, GRACE).endswith("after the grace period")
    full = MinuteProgress(MINUTE, 3, frozenset({0, 1, 2}))
    assert completeness_text(full, MINUTE, early, GRACE) == "complete"


def test_archive_lines_are_the_answers_as_received(store):
    fetched = fetch(MINUTE)
    lines = [json.loads(line) for line in archive_lines(fetched.raw())]
    assert [line["location_id"] for line in lines] == [loc.location_id for loc in LOCATIONS]
    assert [line["payload"] for line in lines] == [r.payload for r in fetched.results]
    minute_store.write_batch(store, 0, parse_messages(fetched.raw()))
    with_log = loader(store, FakeLog({MINUTE: fetched.raw()}))
    from_processor = with_log.load(MINUTE)
    assert with_log.archive(from_processor) == archive_lines(fetched.raw())
    assert loader(store, FakeLog(reachable=False)).archive(from_processor) is None


def test_stream_lag_counts_messages_and_ended_minutes_not_loaded():
    minutes = [NOW.replace(second=0) - timedelta(minutes=m) for m in (5, 4, 3, 2, 1, 0)]
    status = StreamStatus(True, 500, 500, ProcessorState(last_seq=440), minutes)
    lag = stream_lag(status, minutes[1], NOW)
    assert lag.messages_behind == 60
    assert lag.minutes_not_loaded == minutes[2:5], "the minute in progress has not ended"
    assert stream_lag(StreamStatus(True, 500, 500, None, []), None, NOW).messages_behind == 500


def test_sources_and_urls_for_metadata():
    assert sources_text([FROM_LOG, FROM_LOG]) == "log"
    assert sources_text([FETCHED, FROM_LOG, FROM_LOG]) == "log: 2, fetched on demand: 1"
    assert redact_url("nats://user:secret@nats.internal:4222") == "nats://***@nats.internal:4222"
    assert redact_url("nats://127.0.0.1:14222") == "nats://127.0.0.1:14222"
