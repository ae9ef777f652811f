"""The stream processor's output in the object store: parsed messages per minute and batch.

``rain/stream/minutes/<YYYY-MM-DD>/<HH-MM>/batch-<id>.parquet`` holds the rows (``PARSED_SCHEMA``)
of one micro-batch that belong to one minute. Spark replays a batch with the same id and the
same offsets, so rewriting its files is idempotent; a message delivered again in a later batch
is dropped on read (``messages.latest_per_coordinate``: the lowest sequence wins).
Dead letters go to ``rain/stream/deadletter/<YYYY-MM-DD>/batch-<id>.parquet``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from resources import clock
from resources.object_store import ObjectStore
from weather_assets.rain.stream.messages import DEAD, DUPLICATE, PARSED_SCHEMA

STREAM_PREFIX = "rain/stream"
MINUTES_PREFIX = f"{STREAM_PREFIX}/minutes"
DEAD_LETTER_PREFIX = f"{STREAM_PREFIX}/deadletter"


def _utc(minute: datetime) -> datetime:
    return minute.replace(tzinfo=UTC) if minute.tzinfo is None else minute.astimezone(UTC)


def minute_prefix(store: ObjectStore, minute: datetime) -> str:
    minute = _utc(minute)
    return store.key(MINUTES_PREFIX, f"{minute:%Y-%m-%d}", f"{minute:%H-%M}") + "/"


def write_batch(store: ObjectStore, batch_id: int, parsed: pl.DataFrame) -> dict[str, int]:
    """Write one micro-batch: its rows per minute, and its dead letters. Returns rows per key."""
    written: dict[str, int] = {}
    name = f"batch-{batch_id:012d}.parquet"
    usable = parsed.filter(~pl.col("kind").is_in([DEAD, DUPLICATE]))
    for (minute,), rows in usable.partition_by("minute", as_dict=True, maintain_order=True).items():
        key = minute_prefix(store, minute) + name
        store.put_parquet(key, rows)
        written[key] = rows.height
    dead = parsed.filter(pl.col("kind").is_in([DEAD, DUPLICATE]))
    if dead.height:
        day = _utc(dead["published_at"].drop_nulls().min() or clock.utcnow())
        key = store.key(DEAD_LETTER_PREFIX, f"{day:%Y-%m-%d}", name)
        store.put_parquet(key, dead)
        written[key] = dead.height
    return written


def _read(store: ObjectStore, keys: list[str]) -> pl.DataFrame:
    frames = [store.get_parquet(key) for key in sorted(keys)]
    if not frames:
        return pl.DataFrame(schema=PARSED_SCHEMA)
    return pl.concat(frames, how="vertical_relaxed").select(
        [pl.col(k).cast(v) for k, v in PARSED_SCHEMA.items()]
    )


def minute_keys(store: ObjectStore, minute: datetime) -> list[str]:
    return [k for k in store.list_keys(minute_prefix(store, minute)) if k.endswith(".parquet")]


def read_minute(store: ObjectStore, minute: datetime) -> pl.DataFrame:
    """Every processed row of ``minute`` (empty when the processor has written none)."""
    return _read(store, minute_keys(store, minute))


def read_dead_letters(store: ObjectStore, day: datetime) -> pl.DataFrame:
    prefix = store.key(DEAD_LETTER_PREFIX, f"{_utc(day):%Y-%m-%d}") + "/"
    return _read(store, [k for k in store.list_keys(prefix) if k.endswith(".parquet")])


def expired_keys(store: ObjectStore, cutoff: datetime) -> list[str]:
    """Minute and dead-letter files of whole days before ``cutoff`` (for the retention job)."""
    expired = []
    for prefix in (MINUTES_PREFIX, DEAD_LETTER_PREFIX):
        root = store.key(prefix) + "/"
        expired += [
            key
            for key in store.list_keys(root)
            if key[len(root) : len(root) + 10] < f"{_utc(cutoff):%Y-%m-%d}"
        ]
    return expired
