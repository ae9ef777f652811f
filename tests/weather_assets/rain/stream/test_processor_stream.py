"""The stream processor against a real nats-server and real Spark, one query for the module.

The query runs as ``processor.run`` runs it in production (restarting a failed query from its
checkpoint), on the test suite's shared Spark session, with small batches so a minute spans
several of them. One scenario feeds it, and each test checks one part of what came out:

1. three minutes published through the producer code path (``fetch_minute`` + ``publish``);
2. malformed messages and duplicates injected straight into the stream, then a fourth minute;
3. the NATS server stopped and started again on the same port and store, then a fifth minute;
4. a batch that fails on the driver (the object store refusing a write, once): the query fails
   and ``run`` starts it again from its checkpoint, which replays the batch.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import polars as pl
import pytest

from resources.jetstream import EmbeddedServer
from resources.object_store import object_store_from
from resources.settings import load_settings
from tests.conftest import _free_port
from tests.weather_assets.rain.stream.processor_helpers import (
    caught_up,
    expected_rows,
    minute_progress,
    past_minute,
    processor_state,
    publish_minute,
    publish_raw,
    realtime,
    stream_last_seq,
    test_locations,
    wait_for,
)
from weather_assets.rain.stream.log import data_subject
from weather_assets.rain.stream.messages import NOWCAST, latest_per_coordinate
from weather_assets.rain.stream.minute_store import read_dead_letters, read_minute, write_batch
from weather_assets.rain.stream.processor import parse_args, run

pytestmark = pytest.mark.integration  # a real nats-server and Spark

COORDINATES = 24
SHARD_SIZE = 10  # 3 shards: 10, 10 and 4 coordinates
MESSAGES_PER_MINUTE = COORDINATES + 3  # and an end marker per shard
CATCH_UP_S = 180.0
COMPARED = ["location_id", "next_hour_precipitation_mm", "minutes_covered", "forecast_at"]


def _nowcasts(store, minute: datetime) -> pl.DataFrame:
    return read_minute(store, minute).filter(pl.col("kind") == NOWCAST)


def _snapshot(url: str, store, minutes: list[datetime]) -> dict:
    return {
        "state": processor_state(url),
        "last_seq": stream_last_seq(url),
        "minutes": {m: _nowcasts(store, m) for m in minutes},
        "progress": {m: minute_progress(url, m) for m in minutes},
        "latest": realtime(url),
    }


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    from tests.weather_assets.conftest import shared_spark_session

    root = tmp_path_factory.mktemp("rain-stream")
    server = EmbeddedServer(_free_port(), root / "nats", log_path=root / "nats.log").start()
    url = server.url
    locations = test_locations(COORDINATES)
    minutes = [past_minute(ago) for ago in (8, 7, 6, 5, 4, 3)]
    with pytest.MonkeyPatch.context() as env:
        env.setattr("resources.settings.ENV_FILE", None)
        for name in ("S3_BUCKET", "S3_ENDPOINT_URL", "RAIN_CHECKPOINT_DIR", "SOURCE_MODE"):
            env.delenv(name, raising=False)
        env.setenv("DATA_DIR", str(root / "data"))
        env.setenv("NATS_URL", url)
        settings = load_settings()
        store = object_store_from(settings)
        args = parse_args(
            [
                "--trigger-seconds",
                "0.5",
                "--max-messages-per-batch",
                "40",
                "--messages-per-partition",
                "25",
            ]
        )
        stop = threading.Event()
        query = threading.Thread(
            target=run, args=(settings, args, stop, shared_spark_session()), daemon=True
        )
        query.start()
        seen: dict = {"minutes": minutes, "store": store, "url": url, "fetched": {}}
        try:
            # 1. three minutes, as producers publish them
            for minute in minutes[:3]:
                seen["fetched"][minute], _ = publish_minute(url, minute, locations, SHARD_SIZE)
            wait_for(caught_up(url), CATCH_UP_S, "the first three minutes")
            seen["first"] = _snapshot(url, store, minutes[:3])

            # 2. malformed messages and duplicates, straight into the stream; then a minute
            m1 = seen["fetched"][minutes[1]]
            bad_minute = minutes[3]
            subject = data_subject(bad_minute, 0)
            good = json.loads(m1.messages[0].data)
            missing = {k: v for k, v in good.items() if k != "location_id"}
            mistyped = good | {"lat": "north"}
            late = good | {"minute": int(bad_minute.timestamp()) - 600}
            seen["injected"] = publish_raw(
                url,
                [
                    (subject, b"{not json", "bad-1"),
                    (subject, json.dumps(missing).encode(), "bad-2"),
                    (subject, json.dumps(mistyped).encode(), "bad-3"),
                    (subject, json.dumps(late).encode(), "bad-4"),
                    # the same answer again under another id: JetStream stores it
                    (m1.messages[0].subject, m1.messages[0].data, "dup-1"),
                ],
            )
            fetched, _ = publish_minute(url, bad_minute, locations, SHARD_SIZE)
            seen["fetched"][bad_minute] = fetched
            publish_raw(url, [(fetched.messages[3].subject, fetched.messages[3].data, "dup-2")])
            wait_for(caught_up(url), CATCH_UP_S, "the injected messages and the fourth minute")
            seen["second"] = _snapshot(url, store, minutes[:4])
            seen["alive_after_bad_messages"] = query.is_alive()

            # 3. the log restarts; the query resumes from its checkpoint
            server.stop()
            time.sleep(3.0)  # a few triggers find the log gone
            server.start()
            seen["fetched"][minutes[4]], _ = publish_minute(url, minutes[4], locations, SHARD_SIZE)
            wait_for(caught_up(url), CATCH_UP_S, "the minute after the log restarted")
            seen["third"] = _snapshot(url, store, minutes[:5])

            # 4. one failed batch: the query is started again and replays it
            failures = []

            def refuse_once(*args, **kwargs):
                if not failures:
                    failures.append(args[1])
                    raise OSError("object store unavailable (test)")
                return write_batch(*args, **kwargs)

            env.setattr("weather_assets.rain.stream.processor.write_batch", refuse_once)
            seen["fetched"][minutes[5]], _ = publish_minute(url, minutes[5], locations, SHARD_SIZE)
            wait_for(caught_up(url), CATCH_UP_S, "the minute after a failed batch")
            seen["failed_batches"] = failures
            seen["fourth"] = _snapshot(url, store, minutes)
            yield seen
        finally:
            stop.set()
            query.join(timeout=120)
            seen["stopped"] = not query.is_alive()
            server.stop()


def _assert_same_numbers(rows: pl.DataFrame, fetched) -> None:
    expected = expected_rows(fetched).sort("location_id").select(COMPARED)
    assert rows.sort("location_id").select(COMPARED).equals(expected)


def test_every_coordinate_once_with_the_in_process_totals(stream_run):
    first = stream_run["first"]
    for minute in stream_run["minutes"][:3]:
        rows = first["minutes"][minute]
        assert rows.height == COORDINATES
        assert rows["location_id"].n_unique() == COORDINATES
        _assert_same_numbers(rows, stream_run["fetched"][minute])
    totals = pl.concat(first["minutes"].values())["next_hour_precipitation_mm"]
    assert totals.null_count() < totals.len()


def test_minutes_are_marked_complete(stream_run):
    for minute in stream_run["minutes"][:3]:
        progress = stream_run["first"]["progress"][minute]
        assert progress is not None and progress.complete
        assert progress.shards == 3 and progress.counts == {0: 10, 1: 10, 2: 4}


def test_real_time_view_holds_each_coordinate_at_its_newest_minute(stream_run):
    for snapshot, newest in (("first", 2), ("second", 3), ("third", 4), ("fourth", 5)):
        latest = stream_run[snapshot]["latest"]
        minute = stream_run["minutes"][newest]
        assert len(latest) == COORDINATES
        assert {e["minute"] for e in latest} == {int(minute.timestamp())}
        expected = expected_rows(stream_run["fetched"][minute])
        by_id = dict(
            zip(expected["location_id"], expected["next_hour_precipitation_mm"], strict=True)
        )
        assert {e["location_id"]: e["next_hour_precipitation_mm"] for e in latest} == by_id


def test_state_reaches_the_stream_end(stream_run):
    first = stream_run["first"]
    state = first["state"]
    assert state["last_seq"] == first["last_seq"] == 3 * MESSAGES_PER_MINUTE
    assert state["messages_total"] == 3 * MESSAGES_PER_MINUTE
    assert (state["dead_letters_total"], state["duplicates_total"]) == (0, 0)
    assert state["batch_id"] >= 2  # at most 40 messages a batch


def test_bad_messages_are_dead_letters_and_totals_are_unaffected(stream_run):
    second = stream_run["second"]
    state = second["state"]
    assert stream_run["alive_after_bad_messages"]
    assert state["last_seq"] == second["last_seq"]
    assert state["messages_total"] == 4 * MESSAGES_PER_MINUTE + 6
    assert (state["dead_letters_total"], state["duplicates_total"]) == (4, 2)
    for minute in stream_run["minutes"][:4]:
        rows = second["minutes"][minute]
        assert rows.height == COORDINATES  # the duplicates went to the dead letters
        _assert_same_numbers(rows, stream_run["fetched"][minute])
    dead = read_dead_letters(stream_run["store"], datetime.now(UTC))
    reasons = dict(zip(dead["seq"], dead["dead_reason"], strict=True))
    bad = stream_run["injected"]
    assert reasons[bad[0]].startswith("not JSON")
    assert reasons[bad[1]] == "missing field 'location_id'"
    assert reasons[bad[2]] == "field 'lat' is str, not int or float"
    assert "from its answer time" in reasons[bad[3]]
    assert reasons[bad[4]] == "duplicate of sequence " + str(MESSAGES_PER_MINUTE + 1)
    assert sum(r.startswith("duplicate of sequence") for r in reasons.values()) == 2
    assert dead.filter(pl.col("seq") == bad[0])["raw"].to_list() == ["{not json"]


def test_query_resumes_after_the_log_restarts(stream_run):
    third = stream_run["third"]
    minute = stream_run["minutes"][4]
    assert third["state"]["last_seq"] == third["last_seq"] == 5 * MESSAGES_PER_MINUTE + 6
    assert third["state"]["messages_total"] == third["last_seq"]
    _assert_same_numbers(third["minutes"][minute], stream_run["fetched"][minute])
    assert third["progress"][minute].complete
    for m in stream_run["minutes"][:5]:  # nothing processed twice across the restart
        assert latest_per_coordinate(read_minute(stream_run["store"], m)).height == COORDINATES
        assert third["minutes"][m].height == COORDINATES


def test_a_failed_batch_restarts_the_query_from_its_checkpoint(stream_run):
    fourth = stream_run["fourth"]
    minute = stream_run["minutes"][5]
    assert len(stream_run["failed_batches"]) == 1
    assert fourth["state"]["last_seq"] == fourth["last_seq"] == 6 * MESSAGES_PER_MINUTE + 6
    assert fourth["state"]["messages_total"] == fourth["last_seq"]
    assert fourth["state"]["batch_id"] >= stream_run["failed_batches"][0]
    _assert_same_numbers(fourth["minutes"][minute], stream_run["fetched"][minute])
    assert fourth["progress"][minute].complete
