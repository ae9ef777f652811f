"""Shard leases: how several producers share the coordinates without fetching a shard twice.

A lease is one key of the ``rain_leases`` bucket (TTL ``LEASE_TTL_S``, 60 s): ``shard-<i>`` ->
the id of the producer holding shard ``i``. Only the holder fetches a shard.

- **Acquire** with ``kv.create`` (fails when the key exists: someone else holds it).
- **Renew** with ``kv.update(key, id, last=revision)`` from a background task every quarter of
  the TTL, so a minute whose fetch takes long never loses its leases; a renewal refused because
  the revision moved means the lease was lost (it expired and another producer took it).
- **Release** with ``kv.delete(key, last=revision)``: extras beyond the fair share after a
  minute is published, and every lease on shutdown.

A producer that dies (``kill -9``) stops renewing: its leases expire within a TTL and the others
take them at their next minute boundary, so a takeover completes within two minutes.

The decisions (how many shards to hold, which free ones to try, which to give back) are the pure
functions below; ``Leases`` only applies them to the bucket.

Producer health lives beside the leases, in ``rain_producers`` (key = ``kv_key(producer id)``,
a JSON document, see ``producer.Producer.health``). A producer counts as *alive* while its entry
was updated within the lease TTL and does not say ``stopped``: it heartbeats with every lease
renewal, so a dead producer stops counting at the moment its leases expire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import zlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from weather_assets.rain.stream.log import PRODUCERS, current_entries

LEASE_PREFIX = "shard-"


def lease_key(shard: int) -> str:
    return f"{LEASE_PREFIX}{shard}"


def shard_of(key: str) -> int | None:
    """The shard of a lease key, None for any other key."""
    if not key.startswith(LEASE_PREFIX):
        return None
    try:
        return int(key[len(LEASE_PREFIX) :])
    except ValueError:
        return None


# --- the decisions (pure) -------------------------------------------------------------------------


def fair_share(n_shards: int, alive: int) -> int:
    """How many shards one of ``alive`` producers aims to hold: ``ceil(n_shards / alive)``.

    The shares of all alive producers add up to at least ``n_shards``, so when every producer
    sees the same count no shard is left without a holder.
    """
    if n_shards <= 0:
        return 0
    return math.ceil(n_shards / max(1, alive))


def is_alive(health: Mapping[str, Any], now: float, window_s: float) -> bool:
    """A health entry updated within ``window_s`` of ``now`` (unix s) that is not ``stopped``."""
    updated = health.get("updated_at")
    if health.get("stopped") or not isinstance(updated, int | float):
        return False
    return now - updated <= window_s


def alive_producers(
    health: Iterable[Mapping[str, Any]], me: str, now: float, window_s: float
) -> list[str]:
    """Ids of the producers alive at ``now``, ``me`` always among them (sorted)."""
    alive = {me}
    for entry in health:
        if isinstance(entry.get("producer"), str) and is_alive(entry, now, window_s):
            alive.add(entry["producer"])
    return sorted(alive)


def preferred_order(n_shards: int, me: str) -> list[int]:
    """Every shard, starting at a place that depends on the producer id: producers starting
    together try different shards first, so fewer ``kv.create`` calls collide."""
    if n_shards <= 0:
        return []
    start = zlib.crc32(me.encode()) % n_shards
    return [(start + i) % n_shards for i in range(n_shards)]


def shards_to_take(
    n_shards: int,
    held: Collection[int],
    holders: Mapping[int, str],
    me: str,
    target: int,
) -> list[int]:
    """The shards to try to acquire, best first; acquire stops once ``target`` are held.

    Shards whose lease already names ``me`` come first (this producer restarted under the same
    id, or a renewal's answer was lost), then the free ones in ``preferred_order``. Nothing when
    ``held`` already reaches ``target``. A shard held by another producer is never a candidate.
    """
    if len(held) >= target:
        return []
    mine = [s for s in range(n_shards) if holders.get(s) == me and s not in held]
    free = [s for s in preferred_order(n_shards, me) if s not in holders and s not in held]
    return mine + free


def shards_to_release(held: Collection[int], target: int) -> list[int]:
    """The shards beyond ``target`` to give back (the highest indices), after publishing."""
    ordered = sorted(held)
    return ordered[max(0, target) :]


# --- the bucket ---------------------------------------------------------------------------------


async def read_holders(kv: KeyValue, n_shards: int) -> dict[int, tuple[str, int]]:
    """shard -> (holder id, revision) of every shard currently leased."""

    async def one(shard: int) -> tuple[int, tuple[str, int] | None]:
        try:
            entry = await kv.get(lease_key(shard))
        except KeyNotFoundError:
            return shard, None
        if not entry.value:
            return shard, None
        return shard, (entry.value.decode(), entry.revision or 0)

    found = await asyncio.gather(*(one(s) for s in range(n_shards)))
    return {shard: holder for shard, holder in found if holder is not None}


async def read_health(kv: KeyValue) -> list[dict[str, Any]]:
    """Every producer's health document in ``rain_producers``, by producer id."""
    documents = []
    for entry in await current_entries(kv):
        try:
            document = json.loads(entry.value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(document, dict):
            documents.append(document)
    return sorted(documents, key=lambda d: str(d.get("producer")))


async def producer_health(js: JetStreamContext) -> list[dict[str, Any]]:
    """Every producer's health (``producer.Producer.health``), for the platform to show.

    Entries stay up to the bucket's TTL (10 min) after a producer's last update; ``is_alive``
    tells the live ones (``run_sync(url, producer_health)`` from synchronous code).
    """
    return await read_health(await js.key_value(PRODUCERS))


@dataclass
class Leases:
    """The leases one producer holds (shard -> revision of its lease entry).

    Every method takes the bucket it works on, so a new connection after an outage is used as
    is. A failure to reach the server propagates (the caller decides); a refused write is the
    answer "not yours".
    """

    producer: str
    n_shards: int
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))
    held: dict[int, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def shards(self) -> list[int]:
        return sorted(self.held)

    async def _confirm(self, kv: KeyValue, shard: int) -> int | None:
        """After a refused write: the lease's revision when it still names this producer."""
        try:
            entry = await kv.get(lease_key(shard))
        except KeyNotFoundError:
            return None
        if entry.value and entry.value.decode() == self.producer:
            return entry.revision
        return None

    async def renew(self, kv: KeyValue) -> list[int]:
        """Renew every held lease; returns the shards lost (another producer holds them now, or
        the lease expired and nobody has it: either way this producer must not fetch them)."""
        lost: list[int] = []
        value = self.producer.encode()
        for shard, revision in sorted(self.held.items()):
            try:
                self.held[shard] = await kv.update(lease_key(shard), value, last=revision)
            except KeyWrongLastSequenceError:
                confirmed = await self._confirm(kv, shard)
                if confirmed is None:
                    del self.held[shard]
                    lost.append(shard)
                else:  # an earlier renewal went through after all
                    self.held[shard] = confirmed
        return lost

    async def acquire(
        self, kv: KeyValue, target: int, holders: Mapping[int, tuple[str, int]]
    ) -> list[int]:
        """Take shards up to ``target`` (see ``shards_to_take``); returns those taken."""
        names = {shard: holder for shard, (holder, _) in holders.items()}
        taken: list[int] = []
        value = self.producer.encode()
        for shard in shards_to_take(self.n_shards, self.held, names, self.producer, target):
            if len(self.held) >= target:
                break
            key = lease_key(shard)
            try:
                if names.get(shard) == self.producer:
                    revision = await kv.update(key, value, last=holders[shard][1])
                else:
                    revision = await kv.create(key, value)
            except KeyWrongLastSequenceError:  # another producer was faster
                confirmed = await self._confirm(kv, shard)
                if confirmed is None:
                    continue
                revision = confirmed
            self.held[shard] = revision
            taken.append(shard)
        return taken

    async def release(self, kv: KeyValue, shards: Iterable[int]) -> list[int]:
        """Give back ``shards`` (only while the lease is still this producer's revision)."""
        released = []
        for shard in sorted(shards):
            revision = self.held.pop(shard, None)
            if revision is None:
                continue
            try:
                await kv.delete(lease_key(shard), last=revision)
            except Exception as exc:  # moved on already: it is not ours to delete any more
                self.logger.debug("lease %s not deleted: %s", lease_key(shard), exc)
            released.append(shard)
        return released

    async def release_all(self, kv: KeyValue) -> list[int]:
        return await self.release(kv, list(self.held))
