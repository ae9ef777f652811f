"""The rain stream's real-time view, followed live by each web worker.

A daemon thread watches the ``rain_latest`` bucket (a JetStream key-value watch: every put
arrives as it happens), so ``/rain`` shows a coordinate's new next-hour total about as soon as
the stream processor has it, without touching DuckDB. When the log is unreachable the view is
marked unavailable and the dashboard falls back to the warehouse snapshot; the thread retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import datetime
from typing import Any

from resources import clock
from resources.jetstream import LogUnavailable, jetstream
from weather_assets.rain.stream.log import LATEST
from weather_assets.rain.stream.realtime import realtime_rows

log = logging.getLogger("serving.realtime_rain")

RETRY_SECONDS = 5.0


class RealtimeRain:
    """The latest entry per coordinate, kept current by a watch on ``rain_latest``."""

    def __init__(self, url: str, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.connected = False
        self.caught_up = False
        self.last_error: str | None = None
        self.updated_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rows(self) -> list[dict[str, Any]]:
        """The view as warehouse-shaped rows (empty until the watch has caught up)."""
        with self._lock:
            if not (self.connected and self.caught_up):
                return []
            entries = list(self._entries.values())
        return realtime_rows(entries)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rain-realtime", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self._watch())
            except LogUnavailable as exc:
                self._lost(str(exc))
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # the thread must outlive any failure of the watch
                self._lost(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.retry_seconds)

    def _lost(self, reason: str) -> None:
        if self.connected or self.last_error != reason:
            log.warning("real-time rain view unavailable (%s); showing the warehouse", reason)
        with self._lock:
            self.connected = False
            self.caught_up = False
            self.last_error = reason

    async def _watch(self) -> None:
        async with jetstream(self.url, name="serving-realtime") as (nc, js):
            kv = await js.key_value(LATEST)
            watcher = await kv.watchall()
            with self._lock:
                self.connected = True
                self.last_error = None
            try:
                while not self._stop.is_set():
                    try:
                        entry = await watcher.updates(timeout=1.0)
                    except TimeoutError:
                        if nc.is_closed or not nc.is_connected:
                            raise LogUnavailable("connection to the log lost") from None
                        continue
                    if entry is None:  # the initial values are all in
                        with self._lock:
                            self.caught_up = True
                        continue
                    self._apply(entry.key, entry.value, entry.operation)
            finally:
                await watcher.stop()

    def _apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        with self._lock:
            if operation in ("DEL", "PURGE") or not value:
                self._entries.pop(key, None)
            else:
                self._entries[key] = json.loads(value)
            self.updated_at = clock.utcnow()
