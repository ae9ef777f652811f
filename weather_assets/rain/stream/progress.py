"""When a minute of the rain stream is complete, and which minutes the Dagster sensor requests.

The processor records, per minute, which shards' end markers it has processed (``rain_minutes``
in the log). A minute is complete when every shard has ended; a minute some shard never ended
(its producer died before a takeover) is loaded anyway once the grace period has passed, and
says which shards are missing. Both are set-like, so a replayed micro-batch changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from weather_assets.rain.stream.messages import END, NOWCAST


@dataclass(frozen=True)
class MinuteProgress:
    minute: datetime
    shards: int
    ended: frozenset[int] = frozenset()
    counts: dict[int, int] = field(default_factory=dict)
    """Nowcast messages each ended shard says it published."""
    first_seen: float = 0.0
    """Wall time (unix s) the processor first saw the minute."""

    @property
    def complete(self) -> bool:
        return len(self.ended) >= self.shards

    @property
    def missing_shards(self) -> list[int]:
        return sorted(set(range(self.shards)) - self.ended)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "minute": int(self.minute.timestamp()),
                "shards": self.shards,
                "ended": sorted(self.ended),
                "counts": {str(k): v for k, v in sorted(self.counts.items())},
                "first_seen": self.first_seen,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> MinuteProgress:
        body = json.loads(data)
        return cls(
            minute=datetime.fromtimestamp(body["minute"], UTC),
            shards=int(body["shards"]),
            ended=frozenset(int(s) for s in body["ended"]),
            counts={int(k): int(v) for k, v in body.get("counts", {}).items()},
            first_seen=float(body.get("first_seen", 0.0)),
        )


def merge_progress(
    previous: MinuteProgress | None, minute: datetime, rows: pl.DataFrame, now: float
) -> MinuteProgress:
    """``previous`` plus one batch's parsed rows of ``minute`` (end markers and nowcasts)."""
    rows = rows.filter(pl.col("kind").is_in([NOWCAST, END]))
    shards = max([previous.shards if previous else 1, *rows["shards"].drop_nulls().to_list()])
    ends = rows.filter(pl.col("kind") == END)
    ended = set(previous.ended if previous else ())
    counts = dict(previous.counts if previous else {})
    for shard, count in ends.select("shard", "count").iter_rows():
        ended.add(int(shard))
        counts[int(shard)] = int(count)
    return MinuteProgress(
        minute=minute.astimezone(UTC),
        shards=shards,
        ended=frozenset(ended),
        counts=counts,
        first_seen=previous.first_seen if previous else now,
    )


@dataclass(frozen=True)
class ReadyMinute:
    minute: datetime
    progress: MinuteProgress
    reason: str
    """``complete`` or ``grace period passed (shards 1 missing)``."""


def ready_minutes(
    progress: list[MinuteProgress],
    after: datetime | None,
    now: datetime,
    grace: timedelta,
) -> tuple[list[ReadyMinute], list[datetime]]:
    """Minutes after ``after`` to load, oldest first, and the minutes with no data at all
    between them (no producer alive: reported, never silently absent).

    A minute waits until complete, or until ``grace`` after it ended; the first minute still
    waiting stops the list, so partitions are requested in order.
    """
    ready: list[ReadyMinute] = []
    for item in sorted(progress, key=lambda p: p.minute):
        if after is not None and item.minute <= after:
            continue
        if item.complete:
            ready.append(ReadyMinute(item.minute, item, "complete"))
        elif now >= item.minute + timedelta(minutes=1) + grace:
            missing = ", ".join(map(str, item.missing_shards))
            ready.append(
                ReadyMinute(item.minute, item, f"grace period passed (shards {missing} missing)")
            )
        else:
            break
    gaps: list[datetime] = []
    previous = after
    for item in ready:
        if previous is not None:
            step = previous + timedelta(minutes=1)
            while step < item.minute:
                gaps.append(step)
                step += timedelta(minutes=1)
        previous = item.minute
    return ready, gaps
