"""The real-time view: the latest next-hour total per coordinate, in the ``rain_latest`` bucket.

The processor puts one entry per coordinate (key = location id, KV-escaped) as soon as a
micro-batch is processed; ``/rain``, the dashboard and ``make rain`` read them all back (falling
back to the warehouse when the log is not reachable). One key per coordinate keeps it bounded.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
from nats.js import JetStreamContext

from weather_assets.rain.stream.log import LATEST, current_entries, kv_key
from weather_assets.rain.stream.messages import NOWCAST

PUT_WINDOW = 512


def realtime_entries(parsed: pl.DataFrame, updated_at: datetime) -> list[tuple[str, bytes]]:
    """(key, value) of each coordinate's newest minute in ``parsed``; the lowest sequence wins
    within a minute (a later copy of the same answer changes nothing). Vectorised: at 100,000
    coordinates a minute the processor calls it for every batch."""
    newest = (
        parsed.filter(pl.col("kind") == NOWCAST)
        .sort(["minute", "seq"], descending=[True, False])
        .unique(subset=["location_id"], keep="first", maintain_order=True)
    )
    if newest.is_empty():
        return []
    stamp = round(updated_at.astimezone(UTC).timestamp(), 3)
    values = newest.select(
        pl.struct(
            "location_id",
            "lat",
            "lon",
            pl.col("minute").dt.epoch("s").alias("minute"),
            "next_hour_precipitation_mm",
            "minutes_covered",
            "error",
            (pl.col("answered_at").dt.epoch("us") / 1e6).alias("answered_at"),
            pl.lit(stamp, dtype=pl.Float64).alias("updated_at"),
        ).struct.json_encode()
    ).to_series()
    keys = [kv_key(location_id) for location_id in newest["location_id"]]
    return [(key, value.encode()) for key, value in zip(keys, values, strict=True)]


async def put_realtime(js: JetStreamContext, entries: list[tuple[str, bytes]]) -> int:
    """Write the entries, ``PUT_WINDOW`` in flight."""
    kv = await js.key_value(LATEST)
    for start in range(0, len(entries), PUT_WINDOW):
        await asyncio.gather(*(kv.put(k, v) for k, v in entries[start : start + PUT_WINDOW]))
    return len(entries)


async def read_realtime(js: JetStreamContext, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Every coordinate's latest entry (unordered)."""
    entries = await current_entries(await js.key_value(LATEST), timeout_s)
    return [json.loads(entry.value) for entry in entries]


def realtime_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries as the warehouse's latest rows (``latest.LATEST_SQL`` columns and order): the
    office first, then the wettest, unknown totals last, then by id."""
    rows = [
        {
            "location_id": e["location_id"],
            "lat": e["lat"],
            "lon": e["lon"],
            "window_start": datetime.fromtimestamp(e["minute"], UTC),
            "next_hour_precipitation_mm": e["next_hour_precipitation_mm"],
            "minutes_covered": e["minutes_covered"] or 0,
            "answered_at": datetime.fromtimestamp(e["answered_at"], UTC),
        }
        for e in entries
    ]
    return sorted(
        rows,
        key=lambda r: (
            r["location_id"] != "office",
            r["next_hour_precipitation_mm"] is None,
            -(r["next_hour_precipitation_mm"] or 0.0),
            r["location_id"],
        ),
    )
