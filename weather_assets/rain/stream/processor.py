"""The rain stream processor: Spark Structured Streaming from the log to minute files and the
real-time view. ``python -m weather_assets.rain.stream.processor`` (``make run`` starts it).

One long-running query (``SPARK_MASTER``; ``local[*]`` by default) reads ``RAIN_NOWCAST``
through the ``jetstream`` data source (offsets are stream sequences, so the checkpoint under
``RAIN_CHECKPOINT_DIR``, default ``DATA_DIR/stream/checkpoint/rain``, replays a batch over the
same messages), parses on the executors with ``messages.parse_messages`` through
``mapInArrow`` (the platform's one formula for next-hour totals), and per micro-batch, on the
driver (``BatchProcessor``):

1. marks a nowcast already seen for its coordinate and minute (an earlier batch, or another
   task of this one) as a ``duplicate``: the lowest sequence wins, as on read;
2. ``minute_store.write_batch``: the batch's rows per minute, and its dead letters (malformed
   messages and duplicates, with the reason); idempotent per batch id;
3. ``rain_minutes``: each touched minute's progress (``merge_progress``, set-like);
4. ``rain_latest``: each coordinate's newest minute (never an older minute over a newer one);
5. ``rain_processor`` ``state``: last sequence, batch id, totals. The batch's own counts are
   kept beside the totals, so a replayed batch replaces its counts instead of adding them twice.

Every step is idempotent, so a batch cut short by a crash is simply run again by Spark from its
checkpointed offsets. A malformed message is a dead letter, never an exception; a failed batch
(the log or the object store unreachable) fails the query, which is started again from its
checkpoint after a pause. SIGTERM (or Ctrl-C) lets the batch in progress finish, then stops.

``RAIN_PROCESSOR_TEST_PAUSE=<point>:<seconds>`` (tests only) sleeps at ``files`` (minute files
written, nothing else) or ``state`` (all written, Spark not yet told) in every batch with
messages, so a test can ``kill -9`` the process in the middle of a batch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from resources import clock
from resources.jetstream import LogUnavailable, jetstream, nats_url_from
from resources.object_store import ObjectStore, object_store_from
from resources.settings import Settings
from weather_assets.rain.stream.log import (
    LATEST,
    MINUTES,
    PROCESSOR,
    STREAM,
    SUBJECTS,
    LogConfig,
    ensure_log,
    minute_kv_key,
)
from weather_assets.rain.stream.messages import (
    DEAD,
    DUPLICATE,
    END,
    NOWCAST,
    PARSED_SCHEMA,
    RAW_SCHEMA,
    parse_messages,
)
from weather_assets.rain.stream.minute_store import minute_keys, write_batch
from weather_assets.rain.stream.progress import MinuteProgress, merge_progress
from weather_assets.rain.stream.realtime import read_realtime, realtime_entries

PROCESSOR_STATE_KEY = "state"
DEFAULT_TRIGGER_SECONDS = 1.0
DEFAULT_MAX_MESSAGES_PER_BATCH = 50_000
DEFAULT_MESSAGES_PER_PARTITION = 10_000
# Minutes whose coordinates stay in memory for spotting duplicates, a little more than the log's
# duplicate window (~4 MB a minute at 100,000 coordinates); an older minute is read back from
# its minute files when a message for it turns up.
SEEN_MINUTES = 12
RESTART_PAUSE_S = (2.0, 30.0)
STOP_WAIT_S = 60.0
TEST_PAUSE_ENV = "RAIN_PROCESSOR_TEST_PAUSE"
PUT_TIMEOUT_S = 60.0
APP_NAME = "rain-stream-processor"

_COMPUTED = (
    "forecast_at",
    "precipitation_mm_per_h",
    "next_hour_precipitation_mm",
    "minutes_covered",
)
_BATCH_FILE = re.compile(r"batch-(\d+)\.parquet$")

log = logging.getLogger("rain-stream-processor")


# --- schemas: polars <-> Arrow <-> Spark ------------------------------------------------------


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    if isinstance(dtype, pl.List):
        return pa.list_(_arrow_type(dtype.inner))
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp("us")  # naive UTC: Spark's TIMESTAMP_NTZ
    return {
        pl.Int64: pa.int64(),
        pl.Int32: pa.int32(),
        pl.Float64: pa.float64(),
        pl.String: pa.string(),
        pl.Binary: pa.binary(),
    }[dtype.base_type()]


def _spark_type(dtype: pl.DataType):
    from pyspark.sql import types as T

    if isinstance(dtype, pl.List):
        return T.ArrayType(_spark_type(dtype.inner))
    if isinstance(dtype, pl.Datetime):
        return T.TimestampNTZType()
    scalar = {
        pl.Int64: T.LongType,
        pl.Int32: T.IntegerType,
        pl.Float64: T.DoubleType,
        pl.String: T.StringType,
        pl.Binary: T.BinaryType,
    }
    return scalar[dtype.base_type()]()


PARSED_ARROW_SCHEMA = pa.schema([pa.field(k, _arrow_type(v)) for k, v in PARSED_SCHEMA.items()])


def parsed_spark_schema():
    """``PARSED_SCHEMA`` as Spark's ``StructType`` (timestamps as TIMESTAMP_NTZ, naive UTC)."""
    from pyspark.sql import types as T

    return T.StructType([T.StructField(k, _spark_type(v), True) for k, v in PARSED_SCHEMA.items()])


def raw_from_arrow(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    """The source's rows (``published_at`` in UTC) as ``messages.RAW_SCHEMA`` (naive UTC)."""
    if not batches:
        return pl.DataFrame(schema=RAW_SCHEMA)
    frame = pl.from_arrow(pa.Table.from_batches(batches))
    assert isinstance(frame, pl.DataFrame)
    stamp = frame.schema["published_at"]
    published = pl.col("published_at")
    if isinstance(stamp, pl.Datetime) and stamp.time_zone is not None:
        published = published.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return frame.select(
        pl.col("seq").cast(pl.Int64),
        pl.col("subject").cast(pl.String),
        pl.col("data").cast(pl.Binary),
        published.cast(pl.Datetime("us")).alias("published_at"),
    )


def parsed_to_arrow(parsed: pl.DataFrame) -> pa.Table:
    return parsed.select(list(PARSED_SCHEMA)).to_arrow().cast(PARSED_ARROW_SCHEMA)


def parsed_from_arrow(table: pa.Table) -> pl.DataFrame:
    if table.num_rows == 0:
        return pl.DataFrame(schema=PARSED_SCHEMA)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select([pl.col(k).cast(v) for k, v in PARSED_SCHEMA.items()])


def parse_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow``: one Spark partition of raw messages -> ``PARSED_SCHEMA`` rows.

    The whole partition (a ``messagesPerPartition`` range) is parsed as one frame, so duplicates
    inside it are found by ``parse_messages`` itself; the driver finds the rest.
    """
    raw = raw_from_arrow(list(batches))
    if raw.height:
        yield from parsed_to_arrow(parse_messages(raw)).to_batches()


# --- duplicates across tasks and batches --------------------------------------------------------


def mark_duplicates(parsed: pl.DataFrame, seen: pl.DataFrame) -> pl.DataFrame:
    """Nowcasts whose coordinate and minute have a lower sequence (in ``seen``, columns
    ``location_id, minute, seq``, or earlier in ``parsed``) become ``duplicate`` rows without
    totals, as ``parse_messages`` marks the duplicates it finds."""
    nowcast = pl.col("kind") == NOWCAST
    firsts = (
        pl.concat(
            [
                parsed.filter(nowcast).select("location_id", "minute", "seq"),
                seen.select(
                    pl.col("location_id").cast(pl.String),
                    pl.col("minute").cast(pl.Datetime("us")),
                    pl.col("seq").cast(pl.Int64),
                ),
            ]
        )
        .group_by("location_id", "minute")
        .agg(pl.col("seq").min().alias("_first"))
    )
    joined = parsed.join(firsts, on=["location_id", "minute"], how="left", nulls_equal=False)
    duplicate = nowcast & pl.col("_first").is_not_null() & (pl.col("_first") < pl.col("seq"))
    return (
        joined.with_columns(
            pl.when(duplicate).then(pl.lit(DUPLICATE)).otherwise(pl.col("kind")).alias("kind"),
            pl.when(duplicate)
            .then(pl.format("duplicate of sequence {}", pl.col("_first")))
            .otherwise(pl.col("dead_reason"))
            .alias("dead_reason"),
            *[pl.when(duplicate).then(None).otherwise(pl.col(k)).alias(k) for k in _COMPUTED],
        )
        .select([pl.col(k).cast(v) for k, v in PARSED_SCHEMA.items()])
        .sort("seq")
    )


SEEN_SCHEMA = {"location_id": pl.String(), "minute": pl.Datetime("us"), "seq": pl.Int64()}


class SeenIndex:
    """First sequence of each (coordinate, minute) processed, for the last ``keep`` minutes.

    A minute not in memory (after a restart, or an old minute turning up late) is read back
    from the minute files of the batches before the current one, so a replayed batch never
    counts its own earlier attempt as the original.
    """

    def __init__(self, loader: Callable[[datetime, int], pl.DataFrame], keep: int = SEEN_MINUTES):
        self._loader = loader
        self._keep = keep
        self._minutes: dict[datetime, pl.DataFrame] = {}

    def frame(self, minutes: list[datetime], batch_id: int) -> pl.DataFrame:
        for minute in minutes:
            if minute not in self._minutes:
                loaded = self._loader(minute, batch_id).select(
                    "location_id", pl.lit(minute, dtype=pl.Datetime("us")).alias("minute"), "seq"
                )
                self._minutes[minute] = loaded.cast(SEEN_SCHEMA)  # type: ignore[arg-type]
        frames = [self._minutes[m] for m in minutes]
        return pl.concat(frames) if frames else pl.DataFrame(schema=SEEN_SCHEMA)

    def add(self, parsed: pl.DataFrame) -> None:
        nowcasts = parsed.filter(pl.col("kind") == NOWCAST).select(list(SEEN_SCHEMA))
        for (minute,), rows in nowcasts.partition_by("minute", as_dict=True).items():
            merged = pl.concat([self._minutes.get(minute, rows.clear()), rows])
            self._minutes[minute] = merged.group_by("location_id", "minute").agg(
                pl.col("seq").min()
            )
        for minute in sorted(self._minutes)[: -self._keep]:
            del self._minutes[minute]


def seen_from_store(store: ObjectStore) -> Callable[[datetime, int], pl.DataFrame]:
    """Loader for ``SeenIndex``: nowcasts of a minute in files of batches before ``batch_id``."""

    def load(minute: datetime, batch_id: int) -> pl.DataFrame:
        frames = []
        for key in minute_keys(store, minute.replace(tzinfo=UTC)):
            match = _BATCH_FILE.search(key)
            if not match or int(match.group(1)) >= batch_id:
                continue
            rows = pl.read_parquet(
                io.BytesIO(store.get_bytes(key)), columns=["kind", "location_id", "seq"]
            )
            frames.append(rows.filter(pl.col("kind") == NOWCAST).select("location_id", "seq"))
        if not frames:
            return pl.DataFrame(schema={"location_id": pl.String(), "seq": pl.Int64()})
        return pl.concat(frames).group_by("location_id").agg(pl.col("seq").min())

    return load


# --- the real-time view: never an older minute over a newer one -------------------------------


def newer_than_known(parsed: pl.DataFrame, known: dict[str, datetime]) -> pl.DataFrame:
    """Nowcast rows whose minute is not older than what ``rain_latest`` holds for them."""
    nowcasts = parsed.filter(pl.col("kind") == NOWCAST)
    if not known or nowcasts.is_empty():
        return nowcasts
    known_frame = pl.DataFrame(
        {"location_id": list(known), "_known": list(known.values())},
        schema={"location_id": pl.String(), "_known": pl.Datetime("us")},
    )
    return (
        nowcasts.join(known_frame, on="location_id", how="left")
        .filter(pl.col("_known").is_null() | (pl.col("minute") >= pl.col("_known")))
        .drop("_known")
    )


async def put_pipelined(nc: Any, bucket: str, entries: list[tuple[str, bytes]], window: int = 4096):
    """Key-value puts with ``window`` in flight, their acknowledgements counted in a
    subscription callback (``kv.put`` awaits each one: ~15,000/s here, this ~80,000/s). Raises
    if the server rejects any put or does not acknowledge all within the timeout."""
    if not entries:
        return 0
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    slots = asyncio.Semaphore(window)
    acked = {"count": 0, "errors": []}
    inbox = nc.new_inbox()

    async def on_ack(msg: Any) -> None:
        if b'"error"' in msg.data:
            acked["errors"].append(msg.data.decode(errors="replace"))
        acked["count"] += 1
        slots.release()
        if acked["count"] == len(entries) and not done.done():
            done.set_result(None)

    subscription = await nc.subscribe(
        f"{inbox}.*", cb=on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1
    )
    try:
        for index, (key, value) in enumerate(entries):
            await slots.acquire()
            await nc.publish(f"$KV.{bucket}.{key}", value, reply=f"{inbox}.{index}")
        await asyncio.wait_for(done, timeout=PUT_TIMEOUT_S)
    finally:
        await subscription.unsubscribe()
    if acked["errors"]:
        raise RuntimeError(f"{len(acked['errors'])} puts to {bucket} failed: {acked['errors'][0]}")
    return len(entries)


# --- the processor's state ------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFacts:
    batch_id: int
    first_seq: int | None
    last_seq: int | None
    messages: int
    nowcasts: int
    ends: int
    dead: int
    duplicates: int
    minutes: list[datetime] = field(default_factory=list)

    @classmethod
    def of(
        cls, batch_id: int, parsed: pl.DataFrame, seq_range: tuple[int, int] | None = None
    ) -> BatchFacts:
        kinds = parsed["kind"].value_counts()
        count = dict(zip(kinds["kind"].to_list(), kinds["count"].to_list(), strict=True))
        first = parsed["seq"].min()
        last = parsed["seq"].max()
        if seq_range is not None:
            first, last = seq_range[0] + 1, seq_range[1]
        return cls(
            batch_id=batch_id,
            first_seq=None if first is None else int(first),  # type: ignore[arg-type]
            last_seq=None if last is None else int(last),  # type: ignore[arg-type]
            messages=parsed.height,
            nowcasts=count.get(NOWCAST, 0),
            ends=count.get(END, 0),
            dead=count.get(DEAD, 0),
            duplicates=count.get(DUPLICATE, 0),
            minutes=touched_minutes(parsed),
        )


def touched_minutes(parsed: pl.DataFrame) -> list[datetime]:
    """Minutes with a usable message (nowcast or end marker) in the batch, oldest first."""
    return sorted(
        parsed.filter(pl.col("kind").is_in([NOWCAST, END]))["minute"].drop_nulls().unique()
    )


@dataclass(frozen=True)
class ProcessorState:
    """``rain_processor`` ``state``: where the processor is, with totals a replay cannot skew."""

    last_seq: int
    batch_id: int
    updated_at: float
    messages_total: int
    dead_letters_total: int
    duplicates_total: int
    batch: dict[str, int]
    """This batch's own counts, and the last sequence before it (``previous_last_seq``)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProcessorState:
        body = json.loads(data)
        return cls(
            last_seq=int(body["last_seq"]),
            batch_id=int(body["batch_id"]),
            updated_at=float(body["updated_at"]),
            messages_total=int(body["messages_total"]),
            dead_letters_total=int(body["dead_letters_total"]),
            duplicates_total=int(body["duplicates_total"]),
            batch={k: int(v) for k, v in body.get("batch", {}).items()},
        )


def next_state(previous: ProcessorState | None, facts: BatchFacts, now: float) -> ProcessorState:
    """The state after ``facts``. A batch id equal to the previous state's is a replay (the
    process died after recording it, before Spark committed it): its counts replace the earlier
    attempt's instead of adding to them."""
    if previous is None:
        base_seq, messages, dead, duplicates = 0, 0, 0, 0
    elif previous.batch_id == facts.batch_id:
        earlier = previous.batch
        base_seq = earlier.get("previous_last_seq", 0)
        messages = previous.messages_total - earlier.get("messages", 0)
        dead = previous.dead_letters_total - earlier.get("dead", 0)
        duplicates = previous.duplicates_total - earlier.get("duplicates", 0)
    else:
        base_seq = previous.last_seq
        messages = previous.messages_total
        dead = previous.dead_letters_total
        duplicates = previous.duplicates_total
    return ProcessorState(
        last_seq=max(base_seq, facts.last_seq or 0),
        batch_id=facts.batch_id,
        updated_at=round(now, 3),
        messages_total=messages + facts.messages,
        dead_letters_total=dead + facts.dead,
        duplicates_total=duplicates + facts.duplicates,
        batch={
            "messages": facts.messages,
            "dead": facts.dead,
            "duplicates": facts.duplicates,
            "previous_last_seq": base_seq,
        },
    )


def batch_line(facts: BatchFacts, phases: dict[str, float]) -> str:
    """One log line per batch: id, sequence range, counts, minutes, seconds (and per phase)."""
    seqs = "no messages" if facts.first_seq is None else f"seq {facts.first_seq}..{facts.last_seq}"
    minutes = " ".join(f"{m:%H:%M}" for m in facts.minutes) or "-"
    detail = ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items())
    return (
        f"batch {facts.batch_id}: {seqs}, {facts.messages} messages, minutes {minutes}, "
        f"{facts.nowcasts} nowcasts, {facts.ends} end markers, {facts.dead} dead, "
        f"{facts.duplicates} duplicates, {sum(phases.values()):.2f} s ({detail})"
    )


class Stopwatch:
    """Seconds per phase, into ``phases``."""

    def __init__(self, phases: dict[str, float]):
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


def _test_pause(point: str) -> None:
    """``RAIN_PROCESSOR_TEST_PAUSE=<point>:<seconds>`` (tests only)."""
    spec = os.environ.get(TEST_PAUSE_ENV, "")
    name, _, seconds = spec.partition(":")
    if name == point:
        log.warning("test pause at %s for %s s", point, seconds)
        time.sleep(float(seconds or 60))


# --- the driver's side of a batch -----------------------------------------------------------


class BatchProcessor:
    """What a micro-batch does on the driver, after Spark parsed it (no Spark in here)."""

    def __init__(self, store: ObjectStore, url: str):
        self.store = store
        self.url = url
        self.seen = SeenIndex(seen_from_store(store))
        self.known: dict[str, datetime] | None = None
        """Newest minute of each coordinate in ``rain_latest`` (read once, then kept)."""

    def process(
        self,
        batch_id: int,
        parsed: pl.DataFrame,
        seq_range: tuple[int, int] | None = None,
        phases: dict[str, float] | None = None,
    ) -> BatchFacts:
        """Steps 1-5 of the module docstring for one batch; logs one line and returns its facts."""
        phases = dict(phases or {})
        clock_ = Stopwatch(phases)
        minutes = sorted(parsed.filter(pl.col("kind") == NOWCAST)["minute"].unique().to_list())
        parsed = mark_duplicates(parsed, self.seen.frame(minutes, batch_id))
        facts = BatchFacts.of(batch_id, parsed, seq_range)
        clock_.lap("dedup")
        if parsed.height:
            write_batch(self.store, batch_id, parsed)
            _test_pause("files")
        clock_.lap("files")
        asyncio.run(self._update_log(parsed, facts))
        self.seen.add(parsed)
        clock_.lap("log")
        log.info(batch_line(facts, phases))
        if parsed.height:
            _test_pause("state")
        return facts

    async def _update_log(self, parsed: pl.DataFrame, facts: BatchFacts) -> None:
        from nats.js.errors import KeyNotFoundError

        now = clock.utcnow()
        async with jetstream(self.url, name=APP_NAME) as (nc, js):
            if parsed.height:
                minutes_kv = await js.key_value(MINUTES)
                for minute in facts.minutes:
                    key = minute_kv_key(minute.replace(tzinfo=UTC))
                    try:
                        entry = await minutes_kv.get(key)
                        previous = MinuteProgress.from_json(entry.value) if entry.value else None
                    except KeyNotFoundError:
                        previous = None
                    rows = parsed.filter(pl.col("minute") == minute)
                    progress = merge_progress(
                        previous, minute.replace(tzinfo=UTC), rows, now.timestamp()
                    )
                    await minutes_kv.put(key, progress.to_json())
                if self.known is None:
                    self.known = {
                        e["location_id"]: datetime.fromtimestamp(e["minute"], UTC).replace(
                            tzinfo=None
                        )
                        for e in await read_realtime(js, timeout_s=2.0)
                    }
                fresh = newer_than_known(parsed, self.known)
                await put_pipelined(nc, LATEST, realtime_entries(fresh, now))
                newest = fresh.group_by("location_id").agg(pl.col("minute").max())
                self.known.update(zip(newest["location_id"], newest["minute"], strict=True))
            state_kv = await js.key_value(PROCESSOR)
            try:
                entry = await state_kv.get(PROCESSOR_STATE_KEY)
                previous_state = ProcessorState.from_json(entry.value) if entry.value else None
            except (KeyNotFoundError, KeyError, ValueError):
                previous_state = None
            if parsed.height or previous_state is None or previous_state.batch_id != facts.batch_id:
                state = next_state(previous_state, facts, now.timestamp())
                await state_kv.put(PROCESSOR_STATE_KEY, state.to_json())


# --- Spark wiring ---------------------------------------------------------------------------


def checkpoint_dir(settings: Settings) -> str:
    """``RAIN_CHECKPOINT_DIR``, else ``DATA_DIR/stream/checkpoint/rain`` (absolute)."""
    configured = settings.rain_checkpoint_dir
    if configured and "://" in configured:
        return configured
    return str(
        Path(configured or Path(settings.data_dir) / "stream" / "checkpoint" / "rain").resolve()
    )


def batch_offsets(checkpoint: str, batch_id: int) -> tuple[int, int] | None:
    """``(start, end)`` stream sequences of a batch from Spark's offset log (local checkpoints;
    None when it cannot be read). The last line of ``offsets/<id>`` is the source's offset."""

    def end_of(batch: int) -> int | None:
        path = Path(checkpoint) / "offsets" / str(batch)
        try:
            last_line = path.read_text().strip().splitlines()[-1]
            return int(json.loads(last_line)["seq"])
        except (OSError, IndexError, KeyError, ValueError, TypeError):
            return None

    if "://" in checkpoint and not checkpoint.startswith("file://"):
        return None
    checkpoint = checkpoint.removeprefix("file://")
    end = end_of(batch_id)
    if end is None:
        return None
    start = end_of(batch_id - 1) if batch_id > 0 else None
    if start is None:
        return None
    return start, end


def spark_session(settings: Settings):
    from resources.spark import session_from, spark_config_from_env

    return session_from(
        spark_config_from_env(
            {"spark.app.name": APP_NAME, "spark.sql.streaming.stopTimeout": "30s"}, settings
        )
    )


def start_query(
    spark: Any,
    settings: Settings,
    processor: BatchProcessor,
    *,
    checkpoint: str | None = None,
    trigger_seconds: float = DEFAULT_TRIGGER_SECONDS,
    max_messages_per_batch: int = DEFAULT_MAX_MESSAGES_PER_BATCH,
    messages_per_partition: int = DEFAULT_MESSAGES_PER_PARTITION,
    busy: threading.Event | None = None,
):
    """Start the streaming query on ``spark`` (returns the ``StreamingQuery``)."""
    from weather_assets.rain.stream.jetstream_source import FORMAT, JetStreamDataSource

    checkpoint = checkpoint or checkpoint_dir(settings)
    spark.dataSource.register(JetStreamDataSource)
    raw = (
        spark.readStream.format(FORMAT)
        .option("url", nats_url_from(settings))
        .option("stream", STREAM)
        .option("subjects", SUBJECTS)
        .option("maxMessagesPerBatch", str(max_messages_per_batch))
        .option("messagesPerPartition", str(messages_per_partition))
        .option("minPartitions", str(max(1, spark.sparkContext.defaultParallelism)))
        .load()
    )
    parsed = raw.mapInArrow(parse_partition, parsed_spark_schema())

    def process_batch(frame: Any, batch_id: int) -> None:
        if busy is not None:
            busy.set()
        try:
            phases: dict[str, float] = {}
            watch = Stopwatch(phases)
            parsed_batch = parsed_from_arrow(frame.toArrow())
            watch.lap("spark")
            processor.process(batch_id, parsed_batch, batch_offsets(checkpoint, batch_id), phases)
        finally:
            if busy is not None:
                busy.clear()

    return (
        parsed.writeStream.queryName("rain_stream")
        .foreachBatch(process_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=f"{trigger_seconds} seconds")
        .start()
    )


def _ensure_log(settings: Settings, stop: threading.Event) -> None:
    """Create or update the stream and buckets, waiting for the server if it is not up yet."""
    config = LogConfig.from_settings(settings)
    pause = RESTART_PAUSE_S[0]
    while not stop.is_set():

        async def ensure() -> None:
            async with jetstream(config.url, name=APP_NAME) as (_, js):
                await ensure_log(js, config)

        try:
            asyncio.run(ensure())
            return
        except LogUnavailable as exc:
            log.warning("%s; retrying in %.0f s", exc, pause)
            stop.wait(pause)
            pause = min(pause * 2, RESTART_PAUSE_S[1])


def run(
    settings: Settings, args: argparse.Namespace, stop: threading.Event, spark: Any = None
) -> int:
    """Run the query until ``stop`` is set; a failed query is started again from its
    checkpoint after a pause (the log restarting, the object store unreachable...). Spark is
    stopped at the end unless the caller passed its own session."""
    _ensure_log(settings, stop)
    if stop.is_set():
        return 0
    own_session = spark is None
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    spark = spark or spark_session(settings)
    # SparkContext installs its own SIGINT handler (cancel the jobs, raise KeyboardInterrupt):
    # Ctrl-C in `make run` reaches every process, so keep ours, which ends the batch cleanly.
    for sig, handler in handlers.items():
        if callable(handler) and threading.current_thread() is threading.main_thread():
            signal.signal(sig, handler)
    store = object_store_from(settings)
    checkpoint = args.checkpoint or checkpoint_dir(settings)
    log.info(
        "reading %s at %s on %s, checkpoint %s",
        STREAM,
        nats_url_from(settings),
        spark.sparkContext.master,
        checkpoint,
    )
    pause = RESTART_PAUSE_S[0]
    busy = threading.Event()
    try:
        while not stop.is_set():
            query = start_query(
                spark,
                settings,
                BatchProcessor(store, nats_url_from(settings)),
                checkpoint=checkpoint,
                trigger_seconds=args.trigger_seconds,
                max_messages_per_batch=args.max_messages_per_batch,
                messages_per_partition=args.messages_per_partition,
                busy=busy,
            )
            while query.isActive and not stop.is_set():
                stop.wait(0.5)
            if stop.is_set():
                deadline = time.monotonic() + STOP_WAIT_S
                while busy.is_set() and time.monotonic() < deadline:
                    time.sleep(0.1)
                try:
                    query.stop()
                except Exception as exc:  # the JVM got the signal too and is shutting down
                    log.info("query stopped with Spark: %s", str(exc).splitlines()[0])
                log.info("stopped")
                break
            error = query.exception()
            log.error(
                "query failed, restarting in %.0f s from its checkpoint: %s",
                pause,
                _short(str(error)),
            )
            log.debug("query failure: %s", error)
            stop.wait(pause)
            pause = min(pause * 2, RESTART_PAUSE_S[1])
    finally:
        if own_session:
            with contextlib.suppress(Exception):  # already stopped by its own shutdown hook
                spark.stop()
    return 0


def _short(message: str) -> str:
    """A failure's first line and, for a Python traceback, its last (the exception itself)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return message.strip()
    tail = next((line for line in reversed(lines) if "Error" in line or "Exception" in line), "")
    return lines[0] if tail in ("", lines[0]) else f"{lines[0]} ... {tail}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m weather_assets.rain.stream.processor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--trigger-seconds", type=float, default=DEFAULT_TRIGGER_SECONDS)
    parser.add_argument(
        "--max-messages-per-batch", type=int, default=DEFAULT_MAX_MESSAGES_PER_BATCH
    )
    parser.add_argument(
        "--messages-per-partition", type=int, default=DEFAULT_MESSAGES_PER_PARTITION
    )
    parser.add_argument("--checkpoint", default=None, help="default: RAIN_CHECKPOINT_DIR")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from resources.settings import dotenv_environ, load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    with dotenv_environ():
        settings = load_settings()
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s: finishing the batch in progress, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return run(settings, args, stop)


if __name__ == "__main__":
    raise SystemExit(main())
