"""Shard leases: the pure share decisions, a model of several producers over minutes, and the
``Leases`` operations against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from nats.js.api import KeyValueConfig

from resources.jetstream import jetstream
from weather_assets.rain.stream.leases import (
    Leases,
    alive_producers,
    fair_share,
    is_alive,
    lease_key,
    preferred_order,
    producer_health,
    read_holders,
    shard_of,
    shards_to_release,
    shards_to_take,
)
from weather_assets.rain.stream.log import LEASES, PRODUCERS, LogConfig, ensure_log, kv_key

# --- the decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_shards", "alive", "share"),
    [(3, 1, 3), (3, 2, 2), (3, 3, 1), (3, 5, 1), (7, 3, 3), (6, 3, 2), (1, 2, 1), (0, 2, 0)],
)
def test_fair_share_is_the_ceiling(n_shards, alive, share):
    assert fair_share(n_shards, alive) == share
    assert fair_share(n_shards, alive) * alive >= n_shards  # the shares cover every shard


def test_no_producer_alive_counts_as_one():
    assert fair_share(4, 0) == 4


def test_alive_is_recent_and_not_stopped():
    now = 1_000.0
    assert is_alive({"updated_at": 940.0}, now, 60.0)  # exactly one window old
    assert not is_alive({"updated_at": 939.9}, now, 60.0)
    assert not is_alive({"updated_at": 999.0, "stopped": True}, now, 60.0)
    assert not is_alive({}, now, 60.0)
    assert not is_alive({"updated_at": "999"}, now, 60.0)


def test_alive_producers_always_include_me():
    health = [
        {"producer": "a", "updated_at": 990.0},
        {"producer": "b", "updated_at": 900.0},  # stale
        {"producer": "c", "updated_at": 995.0, "stopped": True},
        {"producer": "me", "updated_at": 100.0},  # my own stale entry
        {"updated_at": 999.0},  # no id: ignored
    ]
    assert alive_producers(health, "me", 1_000.0, 60.0) == ["a", "me"]
    assert alive_producers([], "solo", 0.0, 60.0) == ["solo"]


def test_preferred_order_is_every_shard_from_an_id_dependent_start():
    for me in ["a", "b", "host-123"]:
        order = preferred_order(5, me)
        assert sorted(order) == list(range(5))
        assert order == preferred_order(5, me)  # deterministic
        assert order == [(order[0] + i) % 5 for i in range(5)]
    starts = {preferred_order(10, f"producer-{i}")[0] for i in range(20)}
    assert len(starts) > 1
    assert preferred_order(0, "a") == []


def test_shards_to_take_mine_first_then_free_never_others():
    order = preferred_order(6, "me")
    holders = {0: "other", 3: "me", 4: "other"}
    candidates = shards_to_take(6, held=[1], holders=holders, me="me", target=4)
    assert candidates[0] == 3  # my own lease (restart under the same id) first
    assert candidates[1:] == [s for s in order if s in (2, 5)]
    assert shards_to_take(6, held=[1, 2], holders={}, me="me", target=2) == []
    assert shards_to_take(3, held=[], holders={0: "x", 1: "y", 2: "z"}, me="me", target=3) == []


def test_shards_to_release_the_highest_beyond_the_share():
    assert shards_to_release([4, 0, 2], target=2) == [4]
    assert shards_to_release([0, 1], target=2) == []
    assert shards_to_release([0, 1, 2], target=0) == [0, 1, 2]


def test_lease_keys():
    assert lease_key(12) == "shard-12"
    assert shard_of("shard-12") == 12
    assert shard_of("shard-x") is None and shard_of("other") is None


# --- the decisions together: a model of producers over minutes ----------------------------------


class Model:
    """Producers following the lease rules at each minute boundary, in a random order each
    minute; a lease is exclusive (``kv.create``), a dead producer's leases and health last one
    more minute (the TTL), and health is visible once a producer has run a minute."""

    def __init__(self, n_shards: int, seed: int):
        self.n = n_shards
        self.rng = random.Random(seed)
        self.leases: dict[int, str] = {}
        self.held: dict[str, set[int]] = {}
        self.announced: set[str] = set()
        self.dying: dict[str, int] = {}  # producer -> minutes until its leases expire

    def start(self, producer: str) -> None:
        self.held[producer] = set()

    def kill(self, producer: str) -> None:
        del self.held[producer]
        self.dying[producer] = 1

    def minute(self) -> dict[str, set[int]]:
        for producer in list(self.dying):  # expiry before this boundary
            self.dying[producer] -= 1
            if self.dying[producer] < 0:
                del self.dying[producer]
                self.announced.discard(producer)
                self.leases = {s: p for s, p in self.leases.items() if p != producer}
        fetched: dict[str, set[int]] = {}
        order = list(self.held)
        self.rng.shuffle(order)
        for producer in order:
            alive = len(self.announced | {producer})
            target = fair_share(self.n, alive)
            held = self.held[producer]
            for shard in shards_to_take(self.n, held, self.leases, producer, target):
                if len(held) >= target:
                    break
                if shard not in self.leases:  # kv.create succeeds
                    self.leases[shard] = producer
                    held.add(shard)
            fetched[producer] = set(held)
            self.announced.add(producer)
        for producer in order:  # after publishing: give back extras
            alive = len(self.announced | {producer})
            for shard in shards_to_release(self.held[producer], fair_share(self.n, alive)):
                self.held[producer].discard(shard)
                del self.leases[shard]
        return fetched


def covered(fetched: dict[str, set[int]]) -> list[int]:
    shards = [s for held in fetched.values() for s in held]
    assert len(shards) == len(set(shards)), f"a shard fetched twice: {fetched}"
    return sorted(shards)


@pytest.mark.parametrize("seed", range(20))
def test_model_fair_split_and_takeover_within_two_minutes(seed):
    n = 7
    model = Model(n, seed)
    model.start("a")
    assert covered(model.minute()) == list(range(n))  # alone: everything
    model.start("b")
    model.start("c")
    for _ in range(3):  # newcomers get their share; never a gap, never twice
        assert covered(model.minute()) == list(range(n))
    fetched = model.minute()
    assert covered(fetched) == list(range(n))
    # Nobody above the share (ceil(7 / 3) = 3), so e.g. 3 + 3 + 1 or 3 + 2 + 2.
    assert max(len(h) for h in fetched.values()) == fair_share(n, 3)
    assert model.minute() == fetched  # settled: no lease moves any more
    model.kill("b")
    first = model.minute()  # b's leases still held: only its shards are missing
    assert set(covered(first)) | fetched["b"] == set(range(n))
    assert covered(model.minute()) == list(range(n))  # the second minute: taken over
    fetched = model.minute()
    assert covered(fetched) == list(range(n))
    assert sorted(len(h) for h in fetched.values()) == [3, 4]


# --- against a real nats-server -----------------------------------------------------------------


def run(coroutine):
    return asyncio.run(coroutine)


def test_leases_are_exclusive_renewed_lost_adopted_and_released(nats_server):
    async def main():
        async with jetstream(nats_server.url) as (_, js):
            await ensure_log(js, LogConfig(nats_server.url))
            kv = await js.key_value(LEASES)
            a, b = Leases("a", 3), Leases("b", 3)

            assert len(await a.acquire(kv, 2, await read_holders(kv, 3))) == 2
            taken_b = await b.acquire(kv, 2, await read_holders(kv, 3))
            assert len(taken_b) == 1 and set(taken_b).isdisjoint(a.held)
            holders = await read_holders(kv, 3)
            assert {s: h for s, (h, _) in holders.items()} == {
                **dict.fromkeys(a.held, "a"),
                **dict.fromkeys(b.held, "b"),
            }
            # b cannot take a's shards, even when it wants more
            assert await b.acquire(kv, 3, holders) == []

            before = dict(a.held)
            assert await a.renew(kv) == []
            assert all(a.held[s] > before[s] for s in before)

            # One of a's leases expired and b took it: a's next renewal says it is lost.
            stolen = min(a.held)
            await kv.purge(lease_key(stolen))
            await kv.create(lease_key(stolen), b"b")
            assert await a.renew(kv) == [stolen]
            assert stolen not in a.held

            # a restarts under the same id: its remaining lease is adopted, not waited for.
            again = Leases("a", 3)
            adopted = await again.acquire(kv, 1, await read_holders(kv, 3))
            assert adopted == sorted(a.held)

            assert await again.release_all(kv) == adopted
            assert await b.release_all(kv) == sorted(taken_b)
            left = await read_holders(kv, 3)
            return stolen, {s: h for s, (h, _) in left.items()}

    stolen, left = run(main())
    assert left == {stolen: "b"}  # written outside ``b``'s Leases: not b's to release


def test_a_lease_nobody_renews_expires(nats_server):
    """What a kill -9 leaves: the lease goes away by itself after the bucket's TTL, and another
    producer can take it."""

    async def main():
        async with jetstream(nats_server.url) as (_, js):
            kv = await js.create_key_value(KeyValueConfig(bucket=LEASES, ttl=1.0, history=1))
            dead, alive = Leases("dead", 2), Leases("alive", 2)
            assert await dead.acquire(kv, 2, {}) == preferred_order(2, "dead")
            assert await alive.acquire(kv, 2, await read_holders(kv, 2)) == []
            for _ in range(100):  # the TTL is 1 s; wait for the server to expire them
                if not await read_holders(kv, 2):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the leases never expired")
            return await alive.acquire(kv, 2, {})

    assert sorted(run(main())) == [0, 1]


def test_producer_health_reads_every_entry(nats_server):
    async def main():
        async with jetstream(nats_server.url) as (_, js):
            await ensure_log(js, LogConfig(nats_server.url))
            kv = await js.key_value(PRODUCERS)
            assert await producer_health(js) == []
            for name in ["b/2", "a 1"]:
                document = {"producer": name, "updated_at": 1.0, "shards": [0]}
                await kv.put(kv_key(name), json.dumps(document).encode())
            await kv.put("junk", b"not json")
            await kv.put(kv_key("gone"), b"{}")
            await kv.delete(kv_key("gone"))
            return await producer_health(js)

    assert [d["producer"] for d in run(main())] == ["a 1", "b/2"]
