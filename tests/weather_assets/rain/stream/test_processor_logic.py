"""The stream processor's pure parts: the mapInArrow step, duplicates across tasks and batches,
totals that survive a replay, the real-time values, reading a batch's offsets. No Spark, no log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

from resources.object_store import ObjectStore
from tests.weather_assets.rain.stream.processor_helpers import fetch, test_locations
from weather_assets.rain.stream.log import kv_key
from weather_assets.rain.stream.messages import (
    DUPLICATE,
    NOWCAST,
    PARSED_SCHEMA,
    parse_messages,
    raw_frame,
)
from weather_assets.rain.stream.minute_store import write_batch
from weather_assets.rain.stream.processor import (
    PARSED_ARROW_SCHEMA,
    BatchFacts,
    ProcessorState,
    SeenIndex,
    batch_line,
    batch_offsets,
    mark_duplicates,
    newer_than_known,
    next_state,
    parse_partition,
    parsed_from_arrow,
    parsed_spark_schema,
    seen_from_store,
)
from weather_assets.rain.stream.realtime import realtime_entries

MINUTE = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
NAIVE = MINUTE.replace(tzinfo=None)


def _fetched(minute=MINUTE, n=12, shard_size=5):
    return fetch(minute, test_locations(n), shard_size)


def _as_source_batches(raw: pl.DataFrame) -> list[pa.RecordBatch]:
    """What the JetStream source hands to ``mapInArrow``: ``published_at`` in UTC."""
    table = raw.with_columns(pl.col("published_at").dt.replace_time_zone("UTC")).to_arrow()
    return table.to_batches(max_chunksize=7)


def test_map_in_arrow_step_is_parse_messages():
    raw = _fetched().raw()
    out = list(parse_partition(iter(_as_source_batches(raw))))
    assert all(batch.schema == PARSED_ARROW_SCHEMA for batch in out)
    parsed = parsed_from_arrow(pa.Table.from_batches(out))
    assert parsed.schema == pl.Schema(PARSED_SCHEMA)
    assert parsed.equals(parse_messages(raw))
    assert list(parse_partition(iter([]))) == []
    names = [f.name for f in parsed_spark_schema().fields]
    assert names == list(PARSED_SCHEMA)


def _duplicate_of(raw: pl.DataFrame, index: int, seq: int) -> pl.DataFrame:
    return raw_frame([(seq, raw["subject"][index], raw["data"][index], raw["published_at"][index])])


def test_duplicates_across_tasks_and_batches_lose_to_the_lowest_sequence():
    raw = _fetched().raw()
    first = parse_messages(raw.head(6))
    # another task of the same batch holds a copy of message 2 (sequence 100)
    other_task = parse_messages(pl.concat([raw.slice(6), _duplicate_of(raw, 2, 100)]))
    batch = pl.concat([first, other_task])
    marked = mark_duplicates(
        batch,
        pl.DataFrame(
            schema={"location_id": pl.String(), "minute": pl.Datetime("us"), "seq": pl.Int64()}
        ),
    )
    dup = marked.filter(pl.col("seq") == 100).row(0, named=True)
    assert dup["kind"] == DUPLICATE and dup["dead_reason"] == "duplicate of sequence 3"
    assert dup["next_hour_precipitation_mm"] is None and dup["forecast_at"] is None
    assert marked.filter(pl.col("kind") == NOWCAST).height == 12
    unchanged = marked.filter(pl.col("seq") != 100)
    assert unchanged.equals(batch.filter(pl.col("seq") != 100).sort("seq"))
    # a later batch re-delivers message 7 (sequence 200): the seen index has sequence 8
    seen = marked.filter(pl.col("kind") == NOWCAST).select("location_id", "minute", "seq")
    later = mark_duplicates(parse_messages(_duplicate_of(raw, 7, 200)), seen)
    assert later["kind"].to_list() == [DUPLICATE]
    assert later["dead_reason"].to_list() == ["duplicate of sequence 8"]
    # the same message again (a replayed batch) is not its own duplicate
    replay = mark_duplicates(first, seen)
    assert replay.equals(first.sort("seq"))


def test_seen_index_reads_back_only_earlier_batches(tmp_path):
    store = ObjectStore(local_dir=str(tmp_path))
    parsed = parse_messages(_fetched().raw())
    write_batch(store, 3, parsed.head(5))
    write_batch(store, 5, parsed.slice(5))
    load = seen_from_store(store)
    assert sorted(load(NAIVE, 5)["seq"].to_list()) == [1, 2, 3, 4, 5]
    assert load(NAIVE, 3).is_empty()
    index = SeenIndex(load, keep=2)
    frame = index.frame([NAIVE], 5)
    assert frame.columns == ["location_id", "minute", "seq"] and frame.height == 5
    index.add(parsed.slice(5))
    assert index.frame([NAIVE], 5).height == 12
    for minutes in (1, 2, 3):  # only the newest two minutes stay in memory
        index.add(parsed.with_columns(pl.col("minute") + timedelta(minutes=minutes)))
    assert sorted(index._minutes) == [NAIVE + timedelta(minutes=2), NAIVE + timedelta(minutes=3)]


def _facts(batch_id, messages, dead=0, dups=0, last=None):
    return BatchFacts(batch_id, 1, last, messages, messages - dead - dups, 0, dead, dups)


def test_state_totals_survive_a_replayed_batch():
    one = next_state(None, _facts(0, 10, dead=1, last=10), 100.0)
    assert (one.last_seq, one.messages_total, one.dead_letters_total) == (10, 10, 1)
    two = next_state(one, _facts(1, 5, dups=2, last=15), 101.0)
    assert (two.last_seq, two.messages_total, two.duplicates_total) == (15, 15, 2)
    # killed after recording batch 1, before Spark committed it: batch 1 runs again
    again = next_state(
        ProcessorState.from_json(two.to_json()), _facts(1, 5, dups=2, last=15), 102.0
    )
    assert again.to_json() == next_state(one, _facts(1, 5, dups=2, last=15), 102.0).to_json()
    three = next_state(again, _facts(2, 0, last=None), 103.0)
    assert three.last_seq == 15 and three.messages_total == 15
    body = json.loads(three.to_json())
    assert {
        "last_seq",
        "batch_id",
        "updated_at",
        "dead_letters_total",
        "duplicates_total",
        "messages_total",
    } <= set(body)


def test_batch_line_names_range_counts_and_seconds():
    facts = BatchFacts(7, 101, 180, 80, 70, 3, 4, 3, [NAIVE, NAIVE + timedelta(minutes=1)])
    line = batch_line(facts, {"spark": 1.5, "log": 0.25})
    assert line.startswith("batch 7: seq 101..180, 80 messages, minutes 10:00 10:01,")
    assert "4 dead, 3 duplicates, 1.75 s (spark 1.50, log 0.25)" in line


def _entries_row_by_row(parsed: pl.DataFrame, updated_at: datetime) -> list[tuple[str, bytes]]:
    """The reference: each coordinate's newest minute, lowest sequence first, one row at a time."""
    newest: dict[str, dict] = {}
    for row in parsed.filter(pl.col("kind") == "nowcast").sort("seq").iter_rows(named=True):
        best = newest.get(row["location_id"])
        if best is None or row["minute"] > best["minute"]:
            newest[row["location_id"]] = row
    order = sorted(newest.values(), key=lambda r: (-r["minute"].timestamp(), r["seq"]))
    return [
        (
            kv_key(r["location_id"]),
            json.dumps(
                {
                    "location_id": r["location_id"],
                    "lat": r["lat"],
                    "lon": r["lon"],
                    "minute": int(r["minute"].replace(tzinfo=UTC).timestamp()),
                    "next_hour_precipitation_mm": r["next_hour_precipitation_mm"],
                    "minutes_covered": r["minutes_covered"],
                    "error": r["error"],
                    "answered_at": r["answered_at"].replace(tzinfo=UTC).timestamp(),
                    "updated_at": round(updated_at.timestamp(), 3),
                }
            ).encode(),
        )
        for r in order
    ]


def test_realtime_entries_are_each_coordinates_newest_minute():
    raw = pl.concat([_fetched(MINUTE).raw(), _fetched(MINUTE + timedelta(minutes=1)).raw(100)])
    parsed = parse_messages(raw)
    now = datetime(2026, 12, 5, 10, 1, 7, 250_000, tzinfo=UTC)
    fast = realtime_entries(parsed, now)
    slow = _entries_row_by_row(parsed, now)
    assert [k for k, _ in fast] == [k for k, _ in slow]
    assert [json.loads(v) for _, v in fast] == [json.loads(v) for _, v in slow]
    assert {json.loads(v)["minute"] for _, v in fast} == {int(MINUTE.timestamp()) + 60}
    assert realtime_entries(parsed.clear(), now) == []


def test_real_time_view_never_goes_back_a_minute():
    parsed = parse_messages(_fetched().raw())
    ids = parsed.filter(pl.col("kind") == NOWCAST)["location_id"].to_list()
    known = {
        ids[0]: NAIVE + timedelta(minutes=1),
        ids[1]: NAIVE,
        ids[2]: NAIVE - timedelta(minutes=1),
    }
    kept = newer_than_known(parsed, known)["location_id"].to_list()
    assert ids[0] not in kept and ids[1] in kept and ids[2] in kept and len(kept) == 11


def test_batch_offsets_from_the_checkpoint(tmp_path):
    offsets = tmp_path / "offsets"
    offsets.mkdir()
    for batch, seq in ((0, 40), (1, 80)):
        (offsets / str(batch)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{{"seq":{seq}}}')
    assert batch_offsets(str(tmp_path), 1) == (40, 80)
    assert batch_offsets(str(tmp_path), 0) is None  # the initial offset is not in the log
    assert batch_offsets(str(tmp_path), 2) is None
    assert batch_offsets("s3a://bucket/checkpoint", 1) is None
