"""Where a minute partition of ``rain_forecasts`` gets its rows, in this order:

1. **processor output**: the stream processor's minute files (``minute_store.read_minute``);
2. **log**: the minute's messages read back from the log (``minute_log.read_minute_messages``)
   when the log is reachable and holds them;
3. **fetched on demand**: the producer code path (``minute_fetch.fetch_minute``, every shard),
   published to the log when one is reachable (same message ids, so the processor takes them
   once) and turned into rows directly, so the numbers do not depend on the log. Live mode can
   only fetch the minute in progress (``transforms.stale_minute_error``); simulated mode any
   minute, on the partition minute's clock, so backfills reproduce.

Every path ends in ``messages.parse_messages`` rows and ``messages.forecast_rows``: one parser,
one formula, the same numbers whichever way a minute arrived. No Dagster here (the asset in
``assets`` wires it), so the order is unit-tested with a fake log and store.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import polars as pl
from nats.errors import Error as NatsError

from resources import clock
from resources.jetstream import LogUnavailable, run_sync
from resources.object_store import ObjectStore
from weather_assets.locations import Location
from weather_assets.rain.stream import minute_log, minute_store
from weather_assets.rain.stream.log import is_end_subject
from weather_assets.rain.stream.messages import (
    DEAD,
    END,
    MAX_ANSWER_DELAY,
    NOWCAST,
    latest_per_coordinate,
    parse_messages,
)
from weather_assets.rain.stream.minute_fetch import (
    FetchedMinute,
    OutgoingMessage,
    PublishReport,
    publish,
)
from weather_assets.rain.stream.progress import MinuteProgress, merge_progress
from weather_assets.rain.transforms import stale_minute_error

PROCESSOR_OUTPUT = "processor output"
FROM_LOG = "log"
FETCHED = "fetched on demand"
SOURCES = (PROCESSOR_OUTPUT, FROM_LOG, FETCHED)

RAW_PAYLOAD_PREFIX = "raw/openweathermap/onecall"
# One connection attempt per call: a sensor tick or a run must not hang on a dead server.
LOG_TIMEOUT_S = 2.0
# Tags of a run the minute sensor requested (it read the minute's progress from the log).
COMPLETENESS_TAG = "rain/completeness"
MISSING_SHARDS_TAG = "rain/missing_shards"

T = TypeVar("T")


class MinuteUnavailable(RuntimeError):
    """The minute is nowhere to be loaded from (live mode, past minute, not in the log)."""


def redact_url(url: str) -> str:
    """``nats://user:secret@host`` -> ``nats://***@host`` (a NATS_URL may carry credentials)."""
    return re.sub(r"//[^/@]*@", "//***@", url)


# --- the log, as the loader sees it ------------------------------------------------------------


class MinuteLog(Protocol):
    """What the loader needs from the log; ``None`` answers mean "not reachable"."""

    @property
    def unreachable(self) -> str | None: ...

    def read(self, minute: datetime) -> pl.DataFrame | None: ...

    def publish(self, messages: Sequence[OutgoingMessage]) -> PublishReport | None: ...


class NatsMinuteLog:
    """The log at ``url`` through ``run_sync``, one short-lived connection per call.

    The first ``LogUnavailable`` is remembered: a run does not wait on a dead server for every
    minute of its range, and says once why it went without the log.
    """

    def __init__(self, url: str, *, timeout_s: float = LOG_TIMEOUT_S):
        self.url = url
        self.timeout_s = timeout_s
        self._unreachable: str | None = None

    @property
    def unreachable(self) -> str | None:
        return self._unreachable

    def call(self, work: Callable[[Any], Any]) -> Any | None:
        """``work(js)``, or None when the server cannot be reached or answers with a NATS
        error (no JetStream, a timeout): the run then goes on without the log."""
        if self._unreachable:
            return None
        try:
            return run_sync(self.url, work, timeout_s=self.timeout_s)
        except LogUnavailable as exc:
            self._unreachable = str(exc).replace(self.url, redact_url(self.url))
        except (NatsError, TimeoutError) as exc:
            self._unreachable = f"NATS at {redact_url(self.url)}: {type(exc).__name__}: {exc}"
        return None

    def read(self, minute: datetime) -> pl.DataFrame | None:
        return self.call(lambda js: minute_log.read_minute_messages(js, minute))

    def publish(self, messages: Sequence[OutgoingMessage]) -> PublishReport | None:
        return self.call(lambda js: publish(js, messages))

    def status(self) -> minute_log.StreamStatus | None:
        return self.call(minute_log.read_stream_status)


# --- one loaded minute -------------------------------------------------------------------------


@dataclass
class LoadedMinute:
    minute: datetime
    source: str
    parsed: pl.DataFrame
    """``PARSED_SCHEMA`` rows of the minute (with dead letters when read from messages)."""
    raw: pl.DataFrame | None = None
    """The messages themselves (``RAW_SCHEMA``) when read from the log or fetched."""
    fetched: FetchedMinute | None = None
    published: str | None = None
    """Fetched on demand: what publishing to the log did (or why it did not)."""
    notes: list[str] = field(default_factory=list)

    def rows_of_minute(self) -> pl.DataFrame:
        return self.parsed.filter(pl.col("minute") == clock.naive_utc(self.minute))

    @property
    def nowcasts(self) -> pl.DataFrame:
        """One nowcast (or error record) per coordinate, the first published."""
        return latest_per_coordinate(self.rows_of_minute())

    @property
    def dead_letters(self) -> pl.DataFrame:
        return self.parsed.filter(pl.col("kind") == DEAD)

    def progress(self) -> MinuteProgress:
        """Which shards ended (their end markers) among the loaded rows."""
        rows = self.rows_of_minute().filter(pl.col("kind").is_in([NOWCAST, END]))
        return merge_progress(None, self.minute, rows, 0.0)


def _usable(parsed: pl.DataFrame) -> bool:
    return parsed.filter(pl.col("kind").is_in([NOWCAST, END])).height > 0


class MinuteLoader:
    """Loads minutes in the documented order (module docstring)."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        log: MinuteLog,
        fetch: Callable[[datetime], FetchedMinute],
        live: bool,
        log_max_age: timedelta,
        now: Callable[[], datetime] = clock.utcnow,
        log_description: str = "the log",
    ):
        self.store = store
        self.log = log
        self.fetch = fetch
        self.live = live
        self.log_max_age = log_max_age
        self.now = now
        self.log_description = log_description

    def load(self, minute: datetime) -> LoadedMinute:
        minute = minute.astimezone(UTC)
        processed = minute_store.read_minute(self.store, minute)
        if _usable(processed):
            loaded = LoadedMinute(minute, PROCESSOR_OUTPUT, processed)
            if loaded.progress().complete:
                return loaded
            # The processor may still be catching up: the log can hold more of the minute.
            from_log = self._from_log(minute)
            if from_log is not None and _more_of_the_minute(from_log, loaded):
                from_log.notes.append("the processor's output of this minute was incomplete")
                return from_log
            return loaded
        from_log = self._from_log(minute)
        if from_log is not None:
            return from_log
        return self._fetch(minute)

    def _from_log(self, minute: datetime) -> LoadedMinute | None:
        raw = self.log.read(minute)
        if raw is None or raw.is_empty():
            return None
        parsed = parse_messages(raw)
        if not _usable(parsed):  # only dead letters: nothing to load from
            return None
        return LoadedMinute(minute, FROM_LOG, parsed, raw)

    def refusal(self, minute: datetime) -> str | None:
        """Why live mode cannot fetch ``minute`` now (None: it can, or simulated mode)."""
        if not self.live:
            return None
        now = self.now()
        where = (
            f"{self.log_description} is not reachable ({self.log.unreachable})"
            if self.log.unreachable
            else f"neither the stream processor's output nor {self.log_description} holds it"
        )
        if minute < clock.floor_minute(now) - self.log_max_age:
            hours = self.log_max_age.total_seconds() / 3600
            return (
                f"partition minute {minute:%Y-%m-%d %H:%M} UTC is older than the log's retention "
                f"({hours:g} h, RAIN_STREAM_MAX_AGE_HOURS): its messages are gone from the log, "
                f"{where}, and the One Call API only forecasts from the present minute, so live "
                "mode cannot fetch it. Simulated mode (SOURCE_MODE=simulated) can backfill."
            )
        stale = stale_minute_error(minute, now)
        if stale:
            return f"{stale} The minute is older than what the log holds: {where}."
        if now - minute >= MAX_ANSWER_DELAY:
            late = int((now - minute).total_seconds())
            return (
                f"partition minute {minute:%Y-%m-%d %H:%M} UTC started {late} s ago: an answer "
                f"fetched now would arrive more than {MAX_ANSWER_DELAY.total_seconds():.0f} s "
                "after its minute, which the stream's parser rejects as not that minute's "
                f"nowcast (the processor would too), and {where}. Live mode fetches the minute "
                "in progress or the one before it."
            )
        return None

    def _fetch(self, minute: datetime) -> LoadedMinute:
        if reason := self.refusal(minute):
            raise MinuteUnavailable(reason)
        fetched = self.fetch(minute)
        raw = fetched.raw()
        loaded = LoadedMinute(minute, FETCHED, parse_messages(raw), raw, fetched=fetched)
        report = self.log.publish(fetched.messages)  # None: no log (or e.g. no stream on it)
        if report is None:
            loaded.published = f"not published: {self.log.unreachable or 'no log'}"
        else:
            loaded.published = (
                f"{report.published} published, {report.duplicates} already in the log"
            )
        return loaded

    def archive(self, loaded: LoadedMinute) -> list[str] | None:
        """The minute's raw-payload archive lines (``archive_lines``). The processor's files
        hold no payloads, so a minute loaded from them is read back from the log for it
        (None: the log is not reachable or no longer holds the minute)."""
        if loaded.raw is not None:
            return archive_lines(loaded.raw, loaded.parsed)
        raw = self.log.read(loaded.minute)
        return archive_lines(raw) if raw is not None and not raw.is_empty() else None


def _more_of_the_minute(candidate: LoadedMinute, current: LoadedMinute) -> bool:
    a, b = candidate.progress(), current.progress()
    return (len(a.ended), candidate.nowcasts.height) > (len(b.ended), current.nowcasts.height)


# --- what a loaded minute says about itself ----------------------------------------------------


@dataclass(frozen=True)
class MinuteSummary:
    """Per minute: who is missing, who failed, whether every shard ended."""

    minute: datetime
    source: str
    missing_ids: list[str]
    """Registered coordinates with no message at all (their shard's producer was down)."""
    failed: list[tuple[str, str]]
    """``(location_id, error)`` of error records: the API still failed after retries."""
    dead_reasons: list[str]
    progress: MinuteProgress
    completeness: str

    @property
    def failure_count(self) -> int:
        return len(self.failed) + len(self.dead_reasons)


def completeness_text(progress: MinuteProgress, minute: datetime, now: datetime, grace) -> str:
    """``complete``, or which shards are missing and whether the grace period had passed."""
    if progress.complete:
        return "complete"
    missing = ", ".join(map(str, progress.missing_shards))
    if now >= minute + timedelta(minutes=1) + grace:
        return f"shards {missing} of {progress.shards} missing after the grace period"
    return f"shards {missing} of {progress.shards} missing (loaded before the grace period ended)"


def summarize(
    loaded: LoadedMinute, locations: Sequence[Location], now: datetime, grace: timedelta
) -> MinuteSummary:
    nowcasts = loaded.nowcasts
    present = set(nowcasts["location_id"].to_list())
    errors = dict(
        nowcasts.filter(pl.col("error").is_not_null()).select("location_id", "error").iter_rows()
    )
    registered = [loc.location_id for loc in locations]
    progress = loaded.progress()
    return MinuteSummary(
        minute=loaded.minute,
        source=loaded.source,
        missing_ids=[i for i in registered if i not in present],
        failed=[(i, errors[i]) for i in registered if i in errors],
        dead_reasons=[r or "unknown" for r in loaded.dead_letters["dead_reason"].to_list()],
        progress=progress,
        completeness=completeness_text(progress, loaded.minute, now, grace),
    )


def sources_text(sources: Iterable[str]) -> str:
    """``log`` for one source; ``log: 2, fetched on demand: 1`` for a mixed range."""
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{s}: {counts[s]}" for s in SOURCES if s in counts)


# --- the raw-payload archive -------------------------------------------------------------------


def archive_lines(raw: pl.DataFrame, parsed: pl.DataFrame | None = None) -> list[str]:
    """One JSON line per coordinate's first-published nowcast message, as the API answered:
    ``{"location_id", "shard", "payload"}`` or ``{..., "error"}``. End markers, duplicates and
    messages that are not JSON are left out (dead letters are the processor's to keep).
    ``parsed``: ``parse_messages(raw)`` when the caller has it already."""
    parsed = parse_messages(raw) if parsed is None else parsed
    keep = set(latest_per_coordinate(parsed)["seq"].to_list())
    lines = []
    for seq, subject, data in raw.select("seq", "subject", "data").iter_rows():
        if seq not in keep or is_end_subject(subject):
            continue
        body = json.loads(data)
        line: dict[str, Any] = {"location_id": body["location_id"], "shard": body["shard"]}
        line |= {"payload": body["payload"]} if "payload" in body else {"error": body["error"]}
        lines.append(json.dumps(line, separators=(",", ":")))
    return lines


def payload_line(location_id: str, shard: int, payload: Any, error: str | None) -> str:
    """The archive's line for one answer (``archive_lines`` gives the same from messages)."""
    body: dict[str, Any] = {"location_id": location_id, "shard": shard}
    body |= {"payload": payload} if error is None else {"error": error}
    return json.dumps(body, separators=(",", ":"))


def archive_key(store: ObjectStore, minute: datetime) -> str:
    return store.key(RAW_PAYLOAD_PREFIX, f"{minute:%Y-%m-%d}", f"{minute:%H-%M}.jsonl.gz")


def write_archive(store: ObjectStore, minute: datetime, lines: Sequence[str]) -> str:
    body = gzip.compress("\n".join(lines).encode(), compresslevel=5)
    return store.put_bytes(archive_key(store, minute), body, content_type="application/gzip")


# --- lag -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamLag:
    messages_behind: int
    """Messages in the log the processor has not processed yet."""
    minutes_not_loaded: list[datetime]
    """Minutes that ended, with progress in the log, after the newest minute loaded."""
    processor_seen: bool


def stream_lag(
    status: minute_log.StreamStatus, newest_loaded: datetime | None, now: datetime
) -> StreamLag:
    ended = clock.floor_minute(now)
    waiting = [
        m
        for m in status.minutes
        if m + timedelta(minutes=1) <= ended and (newest_loaded is None or m > newest_loaded)
    ]
    return StreamLag(status.messages_behind, waiting, status.processor is not None)
