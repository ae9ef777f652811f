"""One minute of shards, fetched and turned into log messages: the producer code path.

The producer service calls it for the shards it leases; a Dagster run that finds a minute
nowhere else (``dagster asset materialize`` without ``make run``) calls it for every shard, so
both fetch through the same client (rate limit per key, retries, redaction, simulated or live)
and publish the same messages with the same ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
from nats.js import JetStreamContext

from resources import clock
from weather_assets.locations import Location
from weather_assets.rain.client import NowcastResult, OpenWeatherMapResource, fetch_nowcasts
from weather_assets.rain.stream.log import (
    data_subject,
    end_message_id,
    end_subject,
    is_end_subject,
    message_id,
)
from weather_assets.rain.stream.messages import end_marker, nowcast_message, raw_frame

# Publishes in flight before waiting for their acks (JetStream's own flow control does the rest).
PUBLISH_WINDOW = 512


@dataclass(frozen=True)
class OutgoingMessage:
    subject: str
    msg_id: str
    data: bytes


@dataclass
class FetchedMinute:
    """A minute's messages for some shards, in publishing order (each shard's end marker last)."""

    minute: datetime
    shards: list[int]
    messages: list[OutgoingMessage]
    results: list[NowcastResult]
    retries_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> list[NowcastResult]:
        return [r for r in self.results if r.error is not None]

    def raw(self, first_seq: int = 1, published_at: datetime | None = None) -> pl.DataFrame:
        """The messages as the log would hand them back (``messages.RAW_SCHEMA``), for parsing
        without a log."""
        stamp = clock.naive_utc(published_at or self.minute)
        return raw_frame(
            (first_seq + i, m.subject, m.data, stamp) for i, m in enumerate(self.messages)
        )


def fetch_minute(
    openweathermap: OpenWeatherMapResource,
    shards: Mapping[int, Sequence[Location]],
    n_shards: int,
    minute: datetime,
    *,
    producer: str,
    now: Callable[[], datetime] | None = None,
    logger: logging.Logger | None = None,
) -> FetchedMinute:
    """Fetch ``shards`` (shard index -> its coordinates) for ``minute``.

    ``now`` is the simulator's clock and the answers' time: the real clock for the minute in
    progress, the partition minute for a simulated backfill. Live mode always asks the real API
    for the present. A rejected key raises ``ApiAuthError``; any other failure is a message.
    """
    now = now or clock.utcnow
    order = sorted(shards)
    clients = openweathermap.clients_for(n_shards, clock=now, logger=logger)
    fetched = fetch_nowcasts(
        [shards[i] for i in order],
        [clients[i] for i in order],
        max_workers=openweathermap.max_workers,
        now=now,
    )
    retries: Counter[str] = Counter()
    for client in {id(clients[i]): clients[i] for i in order}.values():
        retries.update(client.retries_by_reason)
    results = [
        NowcastResult(r.location, order[r.shard], r.rows, r.payload, r.error, r.answered_at)
        for r in fetched
    ]
    messages: list[OutgoingMessage] = []
    for shard in order:
        mine = [r for r in results if r.shard == shard]
        for r in mine:
            data = nowcast_message(
                r.location,
                minute,
                shard=shard,
                shards=n_shards,
                producer=producer,
                answered_at=r.answered_at or now(),
                payload=r.payload,
                error=r.error,
            )
            messages.append(
                OutgoingMessage(
                    data_subject(minute, shard), message_id(r.location.location_id, minute), data
                )
            )
        marker = end_marker(
            minute, shard=shard, shards=n_shards, count=len(mine), producer=producer
        )
        messages.append(
            OutgoingMessage(
                end_subject(minute, shard), end_message_id(shard, n_shards, minute), marker
            )
        )
    return FetchedMinute(minute, order, messages, results, retries)


@dataclass(frozen=True)
class PublishReport:
    published: int
    duplicates: int
    """Messages JetStream already had (same ``Nats-Msg-Id`` inside the duplicate window)."""
    first_seq: int | None
    last_seq: int | None


async def publish(js: JetStreamContext, messages: Sequence[OutgoingMessage]) -> PublishReport:
    """Publish in order with their ids, ``PUBLISH_WINDOW`` in flight; raises if any is not acked.

    A shard's end marker is published only after all its data messages were acknowledged, so a
    reader that sees the marker has every message before it in the log.
    """
    published = duplicates = 0
    first: int | None = None
    last: int | None = None

    async def send(batch: Sequence[OutgoingMessage]) -> None:
        nonlocal published, duplicates, first, last
        acks = await asyncio.gather(
            *(js.publish(m.subject, m.data, headers={"Nats-Msg-Id": m.msg_id}) for m in batch)
        )
        for ack in acks:
            if ack.duplicate:
                duplicates += 1
            else:
                published += 1
            first = ack.seq if first is None else min(first, ack.seq)
            last = ack.seq if last is None else max(last, ack.seq)

    pending: list[OutgoingMessage] = []
    for message in messages:
        if is_end_subject(message.subject):
            await send(pending)
            pending = []
            await send([message])
            continue
        pending.append(message)
        if len(pending) >= PUBLISH_WINDOW:
            await send(pending)
            pending = []
    await send(pending)
    return PublishReport(published, duplicates, first, last)
