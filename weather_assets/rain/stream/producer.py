"""The rain stream's producer service: ``python -m weather_assets.rain.stream.producer``.

At each minute boundary (wall clock, ``resources.clock``; fetching starts ``START_DELAY_S``
after it) a producer fetches the One Call 3.0 nowcast of the shards it leases through the
platform's client (``minute_fetch.fetch_minute``: rate limit per key, retries, redaction,
simulated or live) and publishes one message per coordinate plus one end marker per shard
(``minute_fetch.publish``, deduplicated by ``Nats-Msg-Id``). One line per minute is logged::

    minute=2026-12-05T11:03Z shards=0,1/3 messages=62 failures=0 retries={} published=62
    duplicates=0 buffered=0 dropped=0 seconds=1.2

Run one, or several (on one machine or many, each with its own ``--id``): they share the shards
through leases (``leases``), a dead one's shards are taken over within two minutes, and each
writes its health to ``rain_producers`` (``leases.producer_health`` reads it).

NATS outages never stop a producer: a minute that cannot be published stays in a bounded
in-memory buffer (``--buffer-minutes``, 10 by default) and is re-published, oldest first, once
the server answers again (a fresh connection is tried every lease renewal and every minute);
when the buffer is full the oldest minute is dropped, logged, and counted in the health's
``dropped``. A producer holding leases keeps fetching its shards while the server is away.

A rejected API key (HTTP 401, ``ApiAuthError``) is fatal: the producer logs it, releases its
leases (so producers with working keys take the shards over at their next minute) and exits
with status 2; so do missing keys, an unreadable ``LOCATIONS_FILE`` and invalid settings.
SIGTERM and SIGINT finish the minute in progress, release the leases, mark the health
``stopped`` and exit 0. ``--once`` fetches and publishes the minute in progress, then exits
(0, or 1 when it could not be published).

Two options exist only so tests can run lease takeovers in seconds instead of minutes:
``--lease-ttl`` (creates the lease bucket with that TTL when it does not exist yet) and
``--clock WALL,VIRTUAL,SCALE`` (the producer's clock reads ``VIRTUAL + (wall - WALL) * SCALE``,
so ``SCALE`` 6 makes a minute last 10 s). Production uses neither.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from resources import clock
from resources.api_budget import DB_URL_ENV_VAR, budget_file
from resources.http import ApiAuthError
from resources.settings import Settings, SettingsError, dotenv_environ, load_settings
from resources.source import SourceConfig
from weather_assets.locations import Location, LocationsError, load_locations, shard_locations
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.stream.leases import (
    Leases,
    alive_producers,
    fair_share,
    read_health,
    read_holders,
    shards_to_release,
)
from weather_assets.rain.stream.log import (
    LEASE_TTL_S,
    LEASES,
    PRODUCERS,
    LogConfig,
    ensure_log,
    kv_key,
    minute_label,
)
from weather_assets.rain.stream.minute_fetch import OutgoingMessage, fetch_minute, publish

LOGGER_NAME = "weather_assets.rain.stream.producer"
START_DELAY_S = 0.5
DEFAULT_BUFFER_MINUTES = 10
CONNECT_TIMEOUT_S = 2.0
JETSTREAM_TIMEOUT_S = 5.0
RENEWALS_PER_TTL = 4

EXIT_OK = 0
EXIT_UNPUBLISHED = 1
EXIT_FATAL = 2


class ProducerFatal(RuntimeError):
    """A problem no retry fixes (a rejected or missing API key): stop and say so."""


# --- the clock --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProducerClock:
    """The producer's "now": the platform's clock, or (tests only) one running ``scale`` times
    faster, reading ``virtual_anchor`` at wall time ``wall_anchor``. Several producer processes
    given the same three numbers agree on the time."""

    wall_anchor: float = 0.0
    virtual_anchor: float = 0.0
    scale: float = 1.0

    @property
    def warped(self) -> bool:
        return (self.wall_anchor, self.virtual_anchor, self.scale) != (0.0, 0.0, 1.0)

    def now(self) -> datetime:
        wall = clock.utcnow()
        if not self.warped:
            return wall
        virtual = self.virtual_anchor + (wall.timestamp() - self.wall_anchor) * self.scale
        return datetime.fromtimestamp(virtual, UTC)

    def real_seconds(self, seconds: float) -> float:
        """Wall seconds that ``seconds`` of this clock take."""
        return seconds / self.scale

    @classmethod
    def parse(cls, text: str) -> ProducerClock:
        try:
            wall, virtual, scale = (float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(
                f"--clock takes WALL,VIRTUAL,SCALE (three numbers), got {text!r}"
            ) from None
        if not scale > 0:
            raise ValueError(f"--clock SCALE must be > 0, got {scale}")
        return cls(wall, virtual, scale)


# --- the outage buffer ------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingMinute:
    minute: datetime
    messages: list[OutgoingMessage]


class MinuteBuffer:
    """Minutes fetched but not yet published, oldest first, at most ``capacity``."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"the buffer holds at least one minute, got {capacity}")
        self.capacity = capacity
        self._minutes: deque[PendingMinute] = deque()

    def add(self, pending: PendingMinute) -> list[PendingMinute]:
        """Keep ``pending``; returns the oldest minutes dropped to make room."""
        self._minutes.append(pending)
        dropped = []
        while len(self._minutes) > self.capacity:
            dropped.append(self._minutes.popleft())
        return dropped

    def oldest(self) -> PendingMinute | None:
        return self._minutes[0] if self._minutes else None

    def pop_oldest(self) -> PendingMinute:
        return self._minutes.popleft()

    @property
    def messages(self) -> int:
        return sum(len(p.messages) for p in self._minutes)

    def __len__(self) -> int:
        return len(self._minutes)


# --- the service ------------------------------------------------------------------------------


@dataclass
class LogSession:
    """One connection to the log and the buckets a producer writes."""

    nc: Client
    js: JetStreamContext
    leases: KeyValue
    producers: KeyValue
    lease_ttl_s: float


async def _quiet(exc: Exception) -> None:
    """nats-py prints connection errors with a traceback; the producer logs its own line."""


@dataclass
class MinuteReport:
    minute: datetime
    shards: list[int]
    messages: int = 0
    failures: int = 0
    retries_by_reason: dict[str, int] = field(default_factory=dict)
    published: int = 0
    duplicates: int = 0
    buffered: int = 0
    dropped: int = 0
    seconds: float = 0.0
    publish_error: str | None = None

    def line(self, n_shards: int) -> str:
        retries = json.dumps(self.retries_by_reason, sort_keys=True, separators=(",", ":"))
        text = (
            f"minute={minute_label(self.minute)} "
            f"shards={','.join(map(str, self.shards))}/{n_shards} "
            f"messages={self.messages} failures={self.failures} retries={retries} "
            f"published={self.published} duplicates={self.duplicates} "
            f"buffered={self.buffered} dropped={self.dropped} seconds={self.seconds:.2f}"
        )
        if self.publish_error:
            text += f" publish_error={self.publish_error!r}"
        return text


class Producer:
    """One producer: leases, fetching, publishing, buffering, health.

    ``run_minute`` is one minute's work and can be driven directly (tests do, with their own
    clock); ``serve`` is the service around it (minute boundaries, lease renewal, signals).
    """

    def __init__(
        self,
        producer_id: str,
        openweathermap: OpenWeatherMapResource,
        shards: Sequence[Sequence[Location]],
        log: LogConfig,
        *,
        clock: ProducerClock | None = None,
        buffer_minutes: int = DEFAULT_BUFFER_MINUTES,
        lease_ttl_s: float | None = None,
        logger: logging.Logger | None = None,
        http_logger: logging.Logger | None = None,
    ):
        self.id = producer_id
        self.openweathermap = openweathermap
        self.shards = [list(shard) for shard in shards]
        self.n_shards = len(self.shards)
        self.log = log
        self.clock = clock or ProducerClock()
        self.buffer = MinuteBuffer(buffer_minutes)
        self.lease_ttl_override = lease_ttl_s
        self.lease_ttl_s = lease_ttl_s or LEASE_TTL_S
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self.http_logger = http_logger or logging.getLogger(f"{LOGGER_NAME}.http")
        self.leases = Leases(producer_id, self.n_shards, logger=self.logger)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = self.clock.now()
        self.last: MinuteReport | None = None
        self.last_published_minute: datetime | None = None
        self.publish_errors = 0
        self.dropped_minutes = 0
        self.dropped_messages = 0
        self.stopped = False
        self._announced = False
        self._session: LogSession | None = None
        self._connect_lock = asyncio.Lock()
        self._down_since: str | None = None

    # --- the connection -----------------------------------------------------------------

    @property
    def alive_window_s(self) -> float:
        """How recent (by this producer's clock) another producer's health must be to count:
        one lease TTL, so a dead producer stops counting when its leases expire."""
        return self.lease_ttl_s * self.clock.scale

    @property
    def renew_every_s(self) -> float:
        """Wall seconds between lease renewals (and health heartbeats)."""
        return self.lease_ttl_s / RENEWALS_PER_TTL

    def _note_down(self, why: str) -> None:
        if self._down_since is None:
            self.logger.warning(
                "NATS at %s unavailable (%s): leases kept, minutes buffered (up to %d), retrying",
                self.log.url,
                why,
                self.buffer.capacity,
            )
        self._down_since = why

    async def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.nc.is_closed:
            with contextlib.suppress(Exception):
                await session.nc.close()

    async def session(self) -> LogSession | None:
        """The connection to the log, made afresh when the previous one is gone; None while
        the server cannot be reached (never raises)."""
        async with self._connect_lock:
            if self._session is not None and self._session.nc.is_connected:
                return self._session
            await self._drop_session()
            try:
                # No reconnect loop inside nats-py (a lost connection is replaced here, at the
                # next renewal or minute). max_reconnect_attempts must be >= 1: with 0, nats-py
                # 2.16 retries the first connect for ever against a server that is down.
                nc = await asyncio.wait_for(
                    nats.connect(
                        self.log.url,
                        name=f"rain-producer {self.id}",
                        connect_timeout=CONNECT_TIMEOUT_S,
                        allow_reconnect=False,
                        max_reconnect_attempts=1,
                        reconnect_time_wait=0.2,
                        error_cb=_quiet,
                    ),
                    timeout=3 * CONNECT_TIMEOUT_S,
                )
            except Exception as exc:
                self._note_down(f"{type(exc).__name__}: {exc}".rstrip(": "))
                return None
            try:
                js = nc.jetstream(timeout=JETSTREAM_TIMEOUT_S)
                if self.lease_ttl_override:
                    await self._create_lease_bucket(js, self.lease_ttl_override)
                await ensure_log(js, self.log)
                leases = await js.key_value(LEASES)
                producers = await js.key_value(PRODUCERS)
                ttl = (await leases.status()).ttl or LEASE_TTL_S
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                self._note_down(f"JetStream not ready: {type(exc).__name__}: {exc}")
                return None
            self.lease_ttl_s = float(ttl)
            self._session = LogSession(nc, js, leases, producers, self.lease_ttl_s)
            if self._down_since is not None:
                self.logger.info("NATS at %s reachable again", self.log.url)
            self._down_since = None
            return self._session

    async def _create_lease_bucket(self, js: JetStreamContext, ttl_s: float) -> None:
        """Tests only: the lease bucket with a short TTL, unless it exists already."""
        config = next(b for b in self.log.buckets() if b.bucket == LEASES)
        # Exists already: its own TTL applies (read back from its status).
        with contextlib.suppress(BadRequestError):
            await js.create_key_value(dataclasses.replace(config, ttl=ttl_s))

    # --- health -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What ``rain_producers`` holds for this producer (``leases.producer_health``).

        ``messages``, ``failures`` and ``retries_by_reason`` are the last minute's;
        ``publish_errors``, ``dropped`` (minutes) and ``dropped_messages`` count since start.
        """
        last = self.last
        return {
            "producer": self.id,
            "host": self.host,
            "pid": self.pid,
            "n_shards": self.n_shards,
            "shards": self.leases.shards,
            "last_minute": int(last.minute.timestamp()) if last else None,
            "last_published_minute": (
                int(self.last_published_minute.timestamp()) if self.last_published_minute else None
            ),
            "messages": last.messages if last else 0,
            "failures": last.failures if last else 0,
            "retries_by_reason": dict(last.retries_by_reason) if last else {},
            "publish_errors": self.publish_errors,
            "dropped": self.dropped_minutes,
            "dropped_messages": self.dropped_messages,
            "buffered": len(self.buffer),
            "started_at": round(self.started_at.timestamp(), 3),
            "updated_at": round(self.clock.now().timestamp(), 3),
            "stopped": self.stopped,
        }

    async def _put_health(self, session: LogSession) -> None:
        await session.producers.put(kv_key(self.id), json.dumps(self.health()).encode())

    async def _alive(self, session: LogSession) -> list[str]:
        others = await read_health(session.producers)
        for entry in others:
            theirs = entry.get("n_shards")
            if entry.get("producer") != self.id and theirs not in (None, self.n_shards):
                self.logger.warning(
                    "producer %s works with %s shards, this one with %d: give every producer "
                    "the same LOCATIONS_FILE and OPENWEATHERMAP_CALLS_PER_MINUTE",
                    entry.get("producer"),
                    theirs,
                    self.n_shards,
                )
        return alive_producers(others, self.id, self.clock.now().timestamp(), self.alive_window_s)

    # --- leases -------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renew the leases and heartbeat the health (the background task's step)."""
        session = await self.session()
        if session is None:
            return
        try:
            async with self.leases.lock:
                lost = await self.leases.renew(session.leases)
            if lost:
                self.logger.warning("lost the lease of shards %s", lost)
            if self._announced:
                await self._put_health(session)
        except Exception as exc:  # the server went away mid-renewal: next time
            self.logger.info("lease renewal failed (%s); retrying", type(exc).__name__)

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every_s)
            await self.renew()

    async def _take_share(self, session: LogSession) -> None:
        async with self.leases.lock:
            lost = await self.leases.renew(session.leases)
            if lost:
                self.logger.warning("lost the lease of shards %s", lost)
            alive = await self._alive(session)
            target = fair_share(self.n_shards, len(alive))
            holders = await read_holders(session.leases, self.n_shards)
            taken = await self.leases.acquire(session.leases, target, holders)
        if taken:
            self.logger.info(
                "took shards %s (share %d of %d shards, %d producers alive)",
                taken,
                target,
                self.n_shards,
                len(alive),
            )

    async def _give_back_extras(self, session: LogSession) -> None:
        async with self.leases.lock:
            alive = await self._alive(session)
            target = fair_share(self.n_shards, len(alive))
            extras = shards_to_release(self.leases.held, target)
            released = await self.leases.release(session.leases, extras)
        if released:
            self.logger.info(
                "released shards %s (share %d of %d shards, %d producers alive)",
                released,
                target,
                self.n_shards,
                len(alive),
            )

    # --- one minute ---------------------------------------------------------------------

    def _fetch(self, minute: datetime, shards: list[int]):
        return fetch_minute(
            self.openweathermap,
            {i: self.shards[i] for i in shards},
            self.n_shards,
            minute,
            producer=self.id,
            now=self.clock.now,
            logger=self.http_logger,
        )

    async def _flush(self, session: LogSession | None, report: MinuteReport) -> None:
        """Publish the buffered minutes, oldest first, until one fails (then not again in the
        same minute)."""
        while (
            session is not None
            and report.publish_error is None
            and self.buffer.oldest() is not None
        ):
            pending = self.buffer.oldest()
            try:
                result = await publish(session.js, pending.messages)
            except Exception as exc:
                self.publish_errors += 1
                report.publish_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                if not session.nc.is_connected:
                    self._note_down(report.publish_error)
                return
            self.buffer.pop_oldest()
            report.published += result.published
            report.duplicates += result.duplicates
            if pending.minute != report.minute:
                self.logger.info(
                    "re-published buffered minute %s: %d messages (%d already in the log)",
                    minute_label(pending.minute),
                    len(pending.messages),
                    result.duplicates,
                )
            if self.last_published_minute is None or pending.minute > self.last_published_minute:
                self.last_published_minute = pending.minute

    async def run_minute(self, minute: datetime) -> MinuteReport:
        """Take the fair share of leases, fetch the held shards for ``minute``, publish (with
        whatever an outage left buffered), write the health, give back extra shards."""
        started = time.monotonic()
        session = await self.session()
        if session is not None:
            try:
                await self._take_share(session)
            except Exception as exc:
                self._note_down(f"leases: {type(exc).__name__}: {exc}")
                session = None
        shards = self.leases.shards
        report = MinuteReport(minute, shards)
        if shards:
            try:
                fetched = await asyncio.to_thread(self._fetch, minute, shards)
            except ApiAuthError as exc:
                raise ProducerFatal(
                    f"the One Call API rejected the key ({exc}); fix "
                    f"{self.openweathermap.key_env_var} and restart this producer"
                ) from exc
            except dg.Failure as exc:
                raise ProducerFatal(str(exc.description or exc)) from exc
            report.messages = len(fetched.messages)
            report.failures = len(fetched.failed)
            report.retries_by_reason = dict(fetched.retries_by_reason)
            # What an outage left behind goes first, making room before this minute is added.
            await self._flush(session, report)
            for dropped in self.buffer.add(PendingMinute(minute, fetched.messages)):
                self.dropped_minutes += 1
                self.dropped_messages += len(dropped.messages)
                report.dropped += 1
                self.logger.error(
                    "dropped minute %s (%d messages): NATS unavailable for longer than the "
                    "buffer's %d minutes",
                    minute_label(dropped.minute),
                    len(dropped.messages),
                    self.buffer.capacity,
                )
        await self._flush(session, report)
        report.buffered = len(self.buffer)
        report.seconds = time.monotonic() - started
        self.last = report
        connected = session is not None and session.nc.is_connected
        if connected:
            try:
                await self._put_health(session)
                self._announced = True
            except Exception as exc:
                self._note_down(f"health: {type(exc).__name__}: {exc}")
                connected = False
        report.seconds = time.monotonic() - started
        self.logger.info("%s", report.line(self.n_shards))
        if connected:
            try:
                await self._give_back_extras(session)
            except Exception as exc:
                self._note_down(f"leases: {type(exc).__name__}: {exc}")
        return report

    # --- the service --------------------------------------------------------------------

    async def _minutes(self, stop: asyncio.Event) -> None:
        previous: datetime | None = None
        while not stop.is_set():
            now = self.clock.now()
            minute = clock.floor_minute(now) + timedelta(minutes=1)
            wait = (minute - now).total_seconds() + START_DELAY_S
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.clock.real_seconds(wait))
                break
            except TimeoutError:
                pass
            if previous is not None and minute - previous > timedelta(minutes=1):
                self.logger.warning(
                    "minutes %s to %s skipped: the previous minute took longer than a minute",
                    minute_label(previous + timedelta(minutes=1)),
                    minute_label(minute - timedelta(minutes=1)),
                )
            try:
                await self.run_minute(minute)
            except ProducerFatal:
                raise
            except Exception:
                self.logger.exception(
                    "minute %s failed; trying again at the next minute", minute_label(minute)
                )
            previous = minute

    async def shutdown(self) -> None:
        """Publish what is buffered if possible, release every lease, mark the health
        ``stopped``, close the connection."""
        self.stopped = True
        session = await self.session()
        if session is not None:
            report = MinuteReport(self.last.minute if self.last else self.clock.now(), [])
            await self._flush(session, report)
            try:
                async with self.leases.lock:
                    released = await self.leases.release_all(session.leases)
                if released:
                    self.logger.info("released shards %s", released)
                await self._put_health(session)
            except Exception as exc:
                self.logger.warning("could not release the leases (%s): they expire", exc)
        if len(self.buffer):
            self.logger.error(
                "%d minutes (%d messages) never published: NATS unavailable at shutdown",
                len(self.buffer),
                self.buffer.messages,
            )
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.nc.drain(), timeout=5.0)
            await self._drop_session()

    async def serve(self, *, once: bool = False) -> int:
        """Run until SIGTERM/SIGINT (or one minute with ``once``); the exit status."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        session = await self.session()
        self.logger.info(
            "producer %s: %d coordinates in %d shards, NATS %s, lease TTL %g s%s",
            self.id,
            sum(len(s) for s in self.shards),
            self.n_shards,
            self.log.url,
            self.lease_ttl_s,
            f", test clock x{self.clock.scale:g}" if self.clock.warped else "",
        )
        if once and session is None:
            self.logger.error("NATS at %s is not reachable: nothing fetched", self.log.url)
            return EXIT_UNPUBLISHED
        keeper = asyncio.create_task(self._keep_leases())
        status = EXIT_OK
        try:
            if once:
                await self.run_minute(clock.floor_minute(self.clock.now()))
                status = EXIT_UNPUBLISHED if len(self.buffer) else EXIT_OK
            else:
                await self._minutes(stop)
        except ProducerFatal as exc:
            self.logger.error("stopping: %s", exc)
            status = EXIT_FATAL
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self.shutdown()
        self.logger.info("producer %s stopped", self.id)
        return status


# --- building it from the settings ----------------------------------------------------------


def openweathermap_from(settings: Settings) -> OpenWeatherMapResource:
    """The One Call resource as the root ``definitions.source_resources`` builds it (same
    ``SourceConfig``, base URL, limit, station reserve and shared budgets); the keys and
    ``RATE_LIMIT_DB_URL`` are read from the environment here, since no Dagster run resolves an
    ``EnvVar`` in this process. Keys are never logged."""
    source = SourceConfig(
        mode=settings.source_mode,
        seed=settings.simulator_seed,
        fault_rate=settings.simulator_fault_rate,
    )
    keys: dict[str, str] = {}
    if source.live:
        if os.environ.get("OPENWEATHERMAP_API_KEYS"):
            keys = {"api_keys": os.environ["OPENWEATHERMAP_API_KEYS"]}
        elif os.environ.get("OPENWEATHERMAP_API_KEY"):
            keys = {"api_key": os.environ["OPENWEATHERMAP_API_KEY"]}
    stations = [s for s in settings.observation_stations.split(",") if s.strip()]
    return OpenWeatherMapResource(
        source=source,
        base_url=settings.openweathermap_base_url,
        calls_per_minute=settings.openweathermap_calls_per_minute,
        station_calls_per_minute=len(stations) if source.live else 0,
        rate_limit_file=budget_file(settings.data_dir),
        rate_limit_db_url=os.environ.get(DB_URL_ENV_VAR) or None,
        **keys,
    )


def default_producer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m weather_assets.rain.stream.producer",
        description="Fetch the rain nowcast of the leased shards each minute and publish it to "
        "the NATS JetStream log (docs/rain_stream.md).",
    )
    parser.add_argument(
        "--id", default=None, help="this producer's id, unique among producers (host-pid)"
    )
    parser.add_argument(
        "--once", action="store_true", help="fetch and publish the minute in progress, then exit"
    )
    parser.add_argument(
        "--buffer-minutes",
        type=int,
        default=DEFAULT_BUFFER_MINUTES,
        help="minutes kept in memory while NATS is unavailable (default %(default)s)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every API retry, not only the totals"
    )
    parser.add_argument(
        "--lease-ttl", type=float, default=None, help="tests only: lease TTL (s) of a new bucket"
    )
    parser.add_argument(
        "--clock", type=ProducerClock.parse, default=None, help="tests only: WALL,VIRTUAL,SCALE"
    )
    args = parser.parse_args(argv)
    if args.buffer_minutes < 1:
        parser.error("--buffer-minutes must be >= 1")
    if args.lease_ttl is not None and not args.lease_ttl > 0:
        parser.error("--lease-ttl must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logger = logging.getLogger(LOGGER_NAME)
    http_logger = logging.getLogger(f"{LOGGER_NAME}.http")
    http_logger.setLevel(logging.INFO if args.verbose else logging.ERROR)
    producer_clock = args.clock or ProducerClock()
    # .env loaded as the dagster commands beside this one load it (resources.settings).
    with dotenv_environ():
        try:
            settings = load_settings()
            openweathermap = openweathermap_from(settings)
            locations = load_locations(settings.locations_file)
            shards = shard_locations(locations, openweathermap.shard_size())
            # Live mode: enough keys for the shards, or say so now (no request is made).
            openweathermap.clients_for(len(shards), clock=producer_clock.now)
        except (SettingsError, LocationsError, dg.Failure) as exc:
            message = exc.description if isinstance(exc, dg.Failure) else exc
            logger.error("producer not started: %s", message)
            return EXIT_FATAL
    producer = Producer(
        args.id or default_producer_id(),
        openweathermap,
        shards,
        LogConfig.from_settings(settings),
        clock=producer_clock,
        buffer_minutes=args.buffer_minutes,
        lease_ttl_s=args.lease_ttl,
        logger=logger,
        http_logger=http_logger,
    )
    return asyncio.run(producer.serve(once=args.once))


if __name__ == "__main__":
    raise SystemExit(main())
