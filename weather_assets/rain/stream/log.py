"""The rain stream's log: one JetStream stream and the key-value buckets around it.

Subjects (all under ``rain.nowcast.>``, one stream ``RAIN_NOWCAST``, file storage), with the
minute in the subject so one minute can be read back from the log alone (``minute_subjects``):

- ``rain.nowcast.<YYYYMMDDHHMM>.data.<shard>``: one message per coordinate per minute,
  deduplicated by JetStream on ``Nats-Msg-Id = <location_id>@<minute>``;
- ``rain.nowcast.<YYYYMMDDHHMM>.end.<shard>``: the shard's end-of-minute marker with its count.

Key-value buckets (each a small JetStream stream, bounded by key or by TTL):

- ``rain_leases``: shard -> producer, TTL ``LEASE_TTL_S`` (a dead producer's lease expires);
- ``rain_producers``: producer -> health (last minute, shards, retries), TTL 10 min;
- ``rain_latest``: coordinate -> latest next-hour total (the real-time view);
- ``rain_minutes``: minute -> which shards ended (completeness, for the Dagster sensor);
- ``rain_processor``: the stream processor's state (last sequence processed, dead letters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from resources.jetstream import nats_url_from
from resources.settings import Settings

STREAM = "RAIN_NOWCAST"
SUBJECTS = "rain.nowcast.>"
DATA_SUBJECTS = "rain.nowcast.*.data.*"
END_SUBJECTS = "rain.nowcast.*.end.*"

LEASES = "rain_leases"
PRODUCERS = "rain_producers"
LATEST = "rain_latest"
MINUTES = "rain_minutes"
PROCESSOR = "rain_processor"

LEASE_TTL_S = 60.0
PRODUCER_HEALTH_TTL_S = 600.0
# Longer than a minute's publishing, and than a lease takeover (a new holder may re-fetch the
# minute its predecessor already published: the ids make the second copy a no-op).
DUPLICATE_WINDOW_S = 600.0

_KEY_SAFE = re.compile(r"[^-_A-Za-z0-9]")


def _subject_minute(minute: datetime) -> str:
    return f"{minute.astimezone(UTC):%Y%m%d%H%M}"


def data_subject(minute: datetime, shard: int) -> str:
    return f"rain.nowcast.{_subject_minute(minute)}.data.{shard}"


def end_subject(minute: datetime, shard: int) -> str:
    return f"rain.nowcast.{_subject_minute(minute)}.end.{shard}"


def minute_subjects(minute: datetime) -> str:
    """The filter of every message of one minute."""
    return f"rain.nowcast.{_subject_minute(minute)}.>"


def is_end_subject(subject: str) -> bool:
    return subject.split(".")[3:4] == ["end"]


def minute_label(minute: datetime) -> str:
    """``2026-12-05T11:03Z``: the minute as it appears in message ids."""
    return f"{minute.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def message_id(location_id: str, minute: datetime) -> str:
    return f"{location_id}@{minute_label(minute)}"


def end_message_id(shard: int, shards: int, minute: datetime) -> str:
    return f"end:{shard}/{shards}@{minute_label(minute)}"


def kv_key(name: str) -> str:
    """A KV-safe key for any id (``=XX`` escapes, reversible by ``kv_name``)."""
    return _KEY_SAFE.sub(lambda m: "".join(f"={b:02X}" for b in m.group().encode()), name)


def kv_name(key: str) -> str:
    return re.sub(
        r"(?:=[0-9A-F]{2})+",
        lambda m: bytes.fromhex(m.group().replace("=", "")).decode(),
        key,
    )


def minute_kv_key(minute: datetime) -> str:
    """``m202612051103``: sortable, one key per minute in ``rain_minutes``."""
    return f"m{minute.astimezone(UTC):%Y%m%d%H%M}"


def minute_from_kv_key(key: str) -> datetime:
    return datetime.strptime(key[1:], "%Y%m%d%H%M").replace(tzinfo=UTC)


@dataclass(frozen=True)
class LogConfig:
    url: str
    max_age_hours: int = 48
    replicas: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> LogConfig:
        return cls(
            url=nats_url_from(settings),
            max_age_hours=settings.rain_stream_max_age_hours,
            replicas=settings.rain_stream_replicas,
        )

    def stream_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=STREAM,
            description="One Call 3.0 nowcasts, one message per coordinate per minute",
            subjects=[SUBJECTS],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_age=self.max_age_hours * 3600.0,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
        )

    def buckets(self) -> list[api.KeyValueConfig]:
        retained = self.max_age_hours * 3600.0

        def bucket(name: str, ttl: float | None, description: str) -> api.KeyValueConfig:
            return api.KeyValueConfig(
                bucket=name,
                description=description,
                ttl=ttl,
                history=1,
                storage=api.StorageType.FILE,
                replicas=self.replicas,
            )

        return [
            bucket(LEASES, LEASE_TTL_S, "shard -> producer holding it"),
            bucket(PRODUCERS, PRODUCER_HEALTH_TTL_S, "producer -> health"),
            bucket(LATEST, retained, "coordinate -> latest next-hour total"),
            bucket(MINUTES, retained, "minute -> shards ended"),
            bucket(PROCESSOR, None, "stream processor state"),
        ]


async def ensure_log(js: JetStreamContext, config: LogConfig) -> api.StreamInfo:
    """Create or update the stream and its buckets to ``config``; safe to call at every start."""
    stream = config.stream_config()
    try:
        info = await js.add_stream(stream)
    except BadRequestError:  # exists with another configuration: bring it to this one
        info = await js.update_stream(stream)
    for bucket in config.buckets():
        try:
            await js.create_key_value(bucket)
        except BadRequestError:
            await js.key_value(bucket.bucket)  # exists (with other limits): use it as it is
    return info


async def current_entries(kv: KeyValue, timeout_s: float = 5.0) -> list[KeyValue.Entry]:
    """Every key's current value (deleted and expired keys left out)."""
    watcher = await kv.watchall(ignore_deletes=True)
    entries: list[KeyValue.Entry] = []
    try:
        while True:
            entry = await watcher.updates(timeout=timeout_s)
            if entry is None:  # caught up with the bucket
                break
            if entry.value:
                entries.append(entry)
    finally:
        await watcher.stop()
    return entries
