"""The JetStream streaming source: offsets and admission (pure), and reading sequence ranges
from a real nats-server (what a Spark task does), including messages the stream no longer has."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from resources.jetstream import run_sync
from tests.weather_assets.rain.stream.processor_helpers import ensure_stream, publish_raw
from weather_assets.rain.stream.jetstream_source import (
    ARROW_SCHEMA,
    JetStreamDataSource,
    JetStreamPartition,
    SourceOptions,
    ack_fields,
    end_seq,
    initial_seq,
    partition_ranges,
    read_range,
    read_record_batches,
)
from weather_assets.rain.stream.log import STREAM


def test_initial_offset_is_just_before_the_first_message_held():
    assert initial_seq(0) == 0  # empty stream
    assert initial_seq(1) == 0
    assert initial_seq(501) == 500  # 1..500 removed by max age


def test_end_of_batch_is_capped_by_admission():
    assert end_seq(0, 1, 120_000, 50_000) == 50_000
    assert end_seq(50_000, 1, 120_000, 50_000) == 100_000
    assert end_seq(100_000, 1, 120_000, 50_000) == 120_000
    assert end_seq(0, 1, 120_000, None) == 120_000  # ReadAllAvailable
    assert end_seq(120_000, 1, 120_000, 50_000) == 120_000  # nothing new


def test_cap_counts_from_the_first_message_still_held():
    # the checkpoint is at 10, the log now starts at 90,001: the cap counts from there
    assert end_seq(10, 90_001, 200_000, 50_000) == 140_000


def test_a_stream_behind_the_checkpoint_never_goes_back():
    assert end_seq(500, 1, 20, 50_000) == 500


def test_partitions_cover_the_range_once():
    ranges = partition_ranges(100, 25_100, 10_000)
    assert ranges == [(101, 8434), (8435, 16768), (16769, 25100)]
    assert partition_ranges(5, 5, 10_000) == []
    assert partition_ranges(0, 3, 10_000, min_partitions=2) == [(1, 2), (3, 3)]
    assert partition_ranges(0, 1, 10_000, min_partitions=2) == [(1, 1)]
    for start, end, per, least in [(0, 1, 1, 1), (7, 1000, 33, 2), (0, 99_999, 10_000, 4)]:
        covered = [s for a, b in partition_ranges(start, end, per, least) for s in range(a, b + 1)]
        assert covered == list(range(start + 1, end + 1))


def test_stream_reader_plans_from_options():
    source = JetStreamDataSource(
        {"url": "nats://127.0.0.1:1", "maxmessagesperbatch": "7", "messagesPerPartition": "3"}
    )
    reader = source.streamReader(source.schema())
    assert reader.getDefaultReadLimit() == ReadMaxRows(7)
    parts = reader.partitions({"seq": 10}, {"seq": 17})
    assert [(p.first, p.last) for p in parts] == [(11, 13), (14, 16), (17, 17)]
    # an unreachable log: no new batch, the query keeps running
    assert reader.latestOffset({"seq": 10}, ReadAllAvailable()) == {"seq": 10}


def test_options_are_checked():
    with pytest.raises(ValueError, match="url"):
        SourceOptions.parse({})
    with pytest.raises(ValueError, match="maxMessagesPerBatch must be >= 1"):
        SourceOptions.parse({"url": "nats://x:1", "maxMessagesPerBatch": "0"})
    options = SourceOptions.parse({"url": "nats://x:1"})
    assert (options.stream, options.subjects) == (STREAM, "rain.nowcast.>")


def test_reply_subjects_give_sequence_and_time():
    assert ack_fields("$JS.ACK.S.C.1.42.7.1700000000123456789.3") == (42, 1700000000123456789)
    assert ack_fields("$JS.ACK.dom.acchash.S.C.1.42.7.1700000000123456789.3.rnd") == (
        42,
        1700000000123456789,
    )
    with pytest.raises(ValueError):
        ack_fields("_INBOX.abc")


def _fill(url: str, n: int, minute: str = "202612051100") -> list[int]:
    ensure_stream(url)
    return publish_raw(
        url,
        [
            (f"rain.nowcast.{minute}.data.{i % 3}", f"m{i}".encode(), f"id-{minute}-{i}")
            for i in range(n)
        ],
    )


def test_read_range_returns_exactly_the_range(nats_server):
    url = nats_server.url
    seqs = _fill(url, 2_500)
    assert seqs == list(range(1, 2_501))
    got = asyncio.run(read_range(url, STREAM, "rain.nowcast.>", 1_001, 2_200, fetch_batch=100))
    assert got.seqs == list(range(1_001, 2_201))
    assert got.datas == [f"m{i - 1}".encode() for i in range(1_001, 2_201)]
    assert got.subjects[0] == "rain.nowcast.202612051100.data.1"  # m1000 -> shard 1000 % 3
    batches = list(read_record_batches(url, STREAM, "rain.nowcast.>", 1, 2_500, 1_000))
    table = pa.Table.from_batches(batches)
    assert table.schema == ARROW_SCHEMA
    assert table.column("seq").to_pylist() == list(range(1, 2_501))
    stamp = table.column("published_at")[0].as_py()
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 120
    # the ephemeral consumers are gone
    consumers = run_sync(url, lambda js: js.consumers_info(STREAM))
    assert consumers == []


def test_messages_no_longer_held_are_skipped(nats_server):
    url = nats_server.url
    _fill(url, 50)

    async def remove(js):
        for seq in (10, 11, 12, 50):
            await js.delete_msg(STREAM, seq)

    run_sync(url, remove)
    got = asyncio.run(read_range(url, STREAM, "rain.nowcast.>", 8, 50))
    assert got.seqs == [8, 9, *range(13, 50)]  # the tail (50) is gone: no waiting for it
    assert asyncio.run(read_range(url, STREAM, "rain.nowcast.>", 10, 12)).seqs == []


def test_subject_filter(nats_server):
    url = nats_server.url
    _fill(url, 30)
    got = asyncio.run(read_range(url, STREAM, "rain.nowcast.*.data.2", 1, 30))
    assert got.seqs == list(range(3, 31, 3))


def test_an_unreachable_log_fails_the_task():
    with pytest.raises(OSError):
        asyncio.run(read_range("nats://127.0.0.1:1", STREAM, ">", 1, 2))


def test_partition_is_picklable_for_the_executors():
    import pickle

    part = pickle.loads(pickle.dumps(JetStreamPartition(3, 9)))
    assert (part.first, part.last) == (3, 9)
