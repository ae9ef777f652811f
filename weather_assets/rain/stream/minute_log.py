"""Reading the rain log back from Dagster: one minute's messages, minute progress, and lag.

The Dagster side of the stream only reads (and, for a minute fetched on demand, publishes
through ``minute_fetch.publish``): it never creates the stream or its buckets, which are
``make run``'s (``log.ensure_log``). Every function takes a connected ``JetStreamContext``;
synchronous callers wrap them in ``resources.jetstream.run_sync``.

- ``read_minute_messages``: every message of one minute (``log.minute_subjects``) through an
  ordered consumer, as ``messages.RAW_SCHEMA`` rows, ready for ``messages.parse_messages``.
- ``read_progress``: ``rain_minutes`` entries after a minute (what the minute sensor decides on).
- ``read_stream_status``: the stream's last sequence, the processor's state and the minutes the
  log has progress for (lag: messages not yet processed, minutes not yet loaded).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError

from weather_assets.rain.stream.leases import is_alive, producer_health
from weather_assets.rain.stream.log import (
    MINUTES,
    PROCESSOR,
    STREAM,
    minute_from_kv_key,
    minute_kv_key,
    minute_subjects,
)
from weather_assets.rain.stream.messages import raw_frame
from weather_assets.rain.stream.progress import MinuteProgress

PROCESSOR_STATE_KEY = "state"
# Longest wait for the next message while reading a minute the log says it holds.
READ_IDLE_TIMEOUT_S = 5.0
# An ephemeral consumer left behind by a dead reader is removed by the server after this.
CONSUMER_INACTIVE_S = 30.0

logger = logging.getLogger(__name__)


class LogReadError(RuntimeError):
    """The log holds a minute but reading it back stopped part way."""


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


async def minute_message_count(js: JetStreamContext, minute: datetime) -> int:
    """Messages the stream holds for ``minute`` (0 when there is no stream at all)."""
    try:
        info = await js.stream_info(STREAM, subjects_filter=minute_subjects(minute))
    except NotFoundError:
        return 0
    return sum((info.state.subjects or {}).values())


async def read_minute_messages(
    js: JetStreamContext, minute: datetime, *, idle_timeout_s: float = READ_IDLE_TIMEOUT_S
) -> pl.DataFrame:
    """Every message of ``minute`` in stream order (``RAW_SCHEMA``); empty if the log has none.

    An ordered consumer filtered on the minute's subjects, from its first message, reading
    until the server says nothing is pending; it is ephemeral (no acks, removed afterwards).
    """
    expected = await minute_message_count(js, minute)
    if not expected:
        return raw_frame([])
    sub = await js.subscribe(
        minute_subjects(minute),
        stream=STREAM,
        ordered_consumer=True,
        deliver_policy=api.DeliverPolicy.ALL,
        inactive_threshold=CONSUMER_INACTIVE_S,
    )
    rows: list[tuple[int, str, bytes, datetime]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout_s)
            except (TimeoutError, NatsTimeoutError):
                raise LogReadError(
                    f"reading minute {minute:%Y-%m-%d %H:%M} from the log stopped after "
                    f"{len(rows)} of {expected} messages (nothing for {idle_timeout_s:.0f} s)"
                ) from None
            meta = msg.metadata
            rows.append((meta.sequence.stream, msg.subject, msg.data, _naive(meta.timestamp)))
            if meta.num_pending == 0:
                break
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the server drops the consumer anyway (inactive threshold)
            logger.debug("unsubscribing the minute reader failed", exc_info=True)
    return raw_frame(rows)


@dataclass(frozen=True)
class ProgressRead:
    """``rain_minutes`` entries after a minute, oldest first, and what the bucket holds."""

    progress: list[MinuteProgress]
    oldest: datetime | None
    """The oldest minute the bucket still holds (older ones expired with the log)."""
    newest: datetime | None
    unreadable: list[str]
    """Keys whose value is not a ``MinuteProgress`` (skipped, reported)."""


async def _minute_keys(js: JetStreamContext) -> list[str]:
    kv = await js.key_value(MINUTES)
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    return sorted(k for k in keys if k.startswith("m") and k[1:].isdigit())


async def read_progress(js: JetStreamContext, after: datetime | None, limit: int) -> ProgressRead:
    """The first ``limit`` minutes after ``after`` (all when None) that ``rain_minutes`` holds.

    Raises ``BucketNotFoundError`` when the log was never set up (no producer or processor).
    """
    kv = await js.key_value(MINUTES)
    keys = await _minute_keys(js)
    after_key = minute_kv_key(after) if after is not None else None
    wanted = [k for k in keys if after_key is None or k > after_key][:limit]

    async def get(key: str) -> tuple[str, bytes | None]:
        try:
            return key, (await kv.get(key)).value
        except KeyNotFoundError:  # expired between listing and reading
            return key, None

    progress: list[MinuteProgress] = []
    unreadable: list[str] = []
    for key, value in await asyncio.gather(*(get(k) for k in wanted)):
        if not value:
            continue
        try:
            progress.append(MinuteProgress.from_json(value))
        except (ValueError, KeyError, TypeError):
            unreadable.append(key)
    return ProgressRead(
        progress=sorted(progress, key=lambda p: p.minute),
        oldest=minute_from_kv_key(keys[0]) if keys else None,
        newest=minute_from_kv_key(keys[-1]) if keys else None,
        unreadable=unreadable,
    )


@dataclass(frozen=True)
class ProcessorState:
    """The stream processor's ``state`` entry in ``rain_processor`` (fields read leniently)."""

    last_seq: int
    batch_id: int | None = None
    updated_at: datetime | None = None
    dead_letters_total: int | None = None

    @classmethod
    def from_json(cls, data: bytes) -> ProcessorState:
        body = json.loads(data)
        updated = body.get("updated_at")
        if isinstance(updated, int | float):
            updated_at = datetime.fromtimestamp(float(updated), UTC)
        elif isinstance(updated, str):
            updated_at = datetime.fromisoformat(updated.replace("Z", "+00:00"))
            updated_at = updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC)
        else:
            updated_at = None
        batch = body.get("batch_id")
        dead = body.get("dead_letters_total")
        return cls(
            last_seq=int(body.get("last_seq") or 0),
            batch_id=int(batch) if batch is not None else None,
            updated_at=updated_at,
            dead_letters_total=int(dead) if dead is not None else None,
        )


@dataclass(frozen=True)
class StreamStatus:
    has_stream: bool
    last_seq: int
    messages: int
    processor: ProcessorState | None
    """None when the processor never recorded its state (not started yet)."""
    minutes: list[datetime]
    """Minutes ``rain_minutes`` holds progress for, oldest first."""
    producers: tuple[dict, ...] = ()
    """The producers' health entries (``leases.producer_health``)."""

    @property
    def messages_behind(self) -> int:
        """Messages in the log the processor has not processed yet."""
        done = self.processor.last_seq if self.processor else 0
        return max(0, self.last_seq - done)


async def read_stream_status(js: JetStreamContext) -> StreamStatus:
    try:
        info = await js.stream_info(STREAM)
    except NotFoundError:
        return StreamStatus(False, 0, 0, None, [])
    processor: ProcessorState | None = None
    try:
        entry = await (await js.key_value(PROCESSOR)).get(PROCESSOR_STATE_KEY)
        if entry.value:
            processor = ProcessorState.from_json(entry.value)
    except (BucketNotFoundError, KeyNotFoundError):
        processor = None
    except (ValueError, TypeError):
        logger.warning("the processor's state in %s is not readable JSON", PROCESSOR)
    try:
        minutes = [minute_from_kv_key(k) for k in await _minute_keys(js)]
    except BucketNotFoundError:
        minutes = []
    try:
        producers = tuple(await producer_health(js))
    except BucketNotFoundError:
        producers = ()
    return StreamStatus(
        True, info.state.last_seq, info.state.messages, processor, minutes, producers
    )


def producers_markdown(producers: tuple[dict, ...], now: float, window_s: float) -> str:
    """A markdown table of the producers' health for the Dagster UI."""
    lines = [
        "| producer | alive | last minute published | shards | messages | retries | dropped |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for health in sorted(producers, key=lambda h: str(h.get("producer"))):
        last = health.get("last_published_minute") or health.get("last_minute")
        shown = (
            datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%d %H:%M")
            if isinstance(last, int | float)
            else "-"
        )
        retries = health.get("retries_by_reason") or {}
        lines.append(
            f"| {health.get('producer')} | {'yes' if is_alive(health, now, window_s) else 'no'} "
            f"| {shown} | {', '.join(map(str, health.get('shards') or [])) or '-'} "
            f"| {health.get('messages', 0)} | {sum(retries.values())} "
            f"| {health.get('dropped', 0)} |"
        )
    if not producers:
        lines.append("| (no producer has reported) | | | | | | |")
    return "\n".join(lines)
