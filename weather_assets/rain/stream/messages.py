"""What travels on the rain log, and the one parser every reader of it uses.

Producers publish with ``nowcast_message`` and ``end_marker``; the stream processor (Spark, per
micro-batch, through ``mapInArrow``) and Dagster (reading a minute straight from the log) both
call ``parse_messages``, which computes next-hour totals with the platform's own pure functions
(``forecasts_frame``, ``next_hour_precipitation``), so there is one formula.

A message that cannot be used (not JSON, a missing or mistyped field, a minute far from its
answer time, a payload the One Call parser rejects) becomes a ``dead`` row with the reason,
never an exception: one bad message must not stop the query.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from weather_assets.locations import Location
from weather_assets.rain.transforms import (
    PayloadError,
    forecasts_frame,
    minutely_rows,
    next_hour_precipitation,
)

VERSION = 1
NOWCAST = "nowcast"
END = "end"
DEAD = "dead"
DUPLICATE = "duplicate"

# The call happens inside its minute; an answer later than this is not that minute's nowcast.
MAX_ANSWER_DELAY = timedelta(minutes=2)
# The first forecast minute follows the call (the next full minute); allow one more.
MAX_FIRST_FORECAST_DELAY = timedelta(minutes=3)
RAW_EXCERPT_CHARS = 2000

# What the log's reader (the Spark data source, or Dagster reading the log) hands over.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "subject": pl.String(),
    "data": pl.Binary(),
    "published_at": pl.Datetime("us"),
}

# One row per message: the processor's output, and what the minute files hold.
PARSED_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "subject": pl.String(),
    "kind": pl.String(),
    "minute": pl.Datetime("us"),
    "location_id": pl.String(),
    "lat": pl.Float64(),
    "lon": pl.Float64(),
    "shard": pl.Int32(),
    "shards": pl.Int32(),
    "count": pl.Int32(),
    "producer": pl.String(),
    "answered_at": pl.Datetime("us"),
    "published_at": pl.Datetime("us"),
    "error": pl.String(),
    "forecast_at": pl.List(pl.Datetime("us")),
    "precipitation_mm_per_h": pl.List(pl.Float64()),
    "next_hour_precipitation_mm": pl.Float64(),
    "minutes_covered": pl.Int64(),
    "dead_reason": pl.String(),
    "raw": pl.String(),
}


class MessageError(ValueError):
    """Why a message is a dead letter."""


# --- publishing ---------------------------------------------------------------------------------


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())


def nowcast_message(
    location: Location,
    minute: datetime,
    *,
    shard: int,
    shards: int,
    producer: str,
    answered_at: datetime,
    payload: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> bytes:
    """One coordinate's minute: the API's answer as received, or why it still failed."""
    if (payload is None) == (error is None):
        raise ValueError("a nowcast message carries either a payload or an error")
    body: dict[str, Any] = {
        "v": VERSION,
        "kind": NOWCAST,
        "location_id": location.location_id,
        "lat": location.lat,
        "lon": location.lon,
        "minute": _epoch(minute),
        "shard": shard,
        "shards": shards,
        "producer": producer,
        "answered_at": round(answered_at.astimezone(UTC).timestamp(), 3),
    }
    if payload is not None:
        body["payload"] = payload
    else:
        body["error"] = error
    return json.dumps(body, separators=(",", ":")).encode()


def end_marker(minute: datetime, *, shard: int, shards: int, count: int, producer: str) -> bytes:
    """The shard's last message of the minute: how many nowcast messages it published."""
    return json.dumps(
        {
            "v": VERSION,
            "kind": END,
            "minute": _epoch(minute),
            "shard": shard,
            "shards": shards,
            "count": count,
            "producer": producer,
        },
        separators=(",", ":"),
    ).encode()


# --- parsing ------------------------------------------------------------------------------------


def _field(body: Mapping[str, Any], name: str, kinds: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise MessageError(f"missing field {name!r}")
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise MessageError(f"field {name!r} is {type(value).__name__}, not {_kind_names(kinds)}")
    return value


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = float(_field(body, name, (int, float)))
    if not math.isfinite(value) or not low <= value <= high:
        raise MessageError(f"field {name!r} = {value} is outside [{low:g}, {high:g}]")
    return value


def _minute(body: Mapping[str, Any]) -> datetime:
    epoch = _field(body, "minute", int)
    if epoch % 60:
        raise MessageError(f"field 'minute' = {epoch} is not on a minute boundary")
    return datetime.fromtimestamp(epoch, UTC)


def _shard(body: Mapping[str, Any]) -> tuple[int, int]:
    shard = _field(body, "shard", int)
    shards = _field(body, "shards", int)
    if shards < 1 or not 0 <= shard < shards:
        raise MessageError(f"shard {shard} of {shards} is not a valid shard")
    return shard, shards


def _decode(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise MessageError("empty message")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError(f"not a JSON object but {type(body).__name__}")
    if body.get("v") != VERSION:
        raise MessageError(f"unsupported message version {body.get('v')!r} (expected {VERSION})")
    return body


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _parse_one(seq: int, subject: str, data: bytes | None, published_at: datetime | None):
    """``(row, nowcast rows or None)``; raises ``MessageError`` for a dead letter."""
    body = _decode(data)
    kind = body.get("kind")
    minute = _minute(body)
    shard, shards = _shard(body)
    producer = _field(body, "producer", str)
    published = published_at.replace(tzinfo=UTC) if published_at is not None else None
    if published is not None and minute > published + timedelta(minutes=1):
        raise MessageError(
            f"minute {minute:%Y-%m-%d %H:%M} is after the message time {published:%H:%M:%S}"
        )
    row: dict[str, Any] = {
        "seq": seq,
        "subject": subject,
        "kind": kind,
        "minute": _naive(minute),
        "shard": shard,
        "shards": shards,
        "producer": producer,
        "published_at": published_at,
    }
    if kind == END:
        count = _field(body, "count", int)
        if count < 0:
            raise MessageError(f"field 'count' = {count} is negative")
        row["count"] = count
        return row, None
    if kind != NOWCAST:
        raise MessageError(f"unknown kind {kind!r}")
    location_id = _field(body, "location_id", str)
    if not location_id:
        raise MessageError("field 'location_id' is empty")
    lat = _number(body, "lat", -90.0, 90.0)
    lon = _number(body, "lon", -180.0, 180.0)
    answered_at = datetime.fromtimestamp(_number(body, "answered_at", 0.0, 2**33), UTC)
    if not minute <= answered_at < minute + MAX_ANSWER_DELAY:
        delay = (answered_at - minute).total_seconds()
        raise MessageError(
            f"minute {minute:%Y-%m-%d %H:%M} is {delay:+.0f} s from its answer time "
            f"(expected within [0, {MAX_ANSWER_DELAY.total_seconds():.0f}) s)"
        )
    row |= {"location_id": location_id, "lat": lat, "lon": lon, "answered_at": _naive(answered_at)}
    has_payload, has_error = "payload" in body, "error" in body
    if has_payload == has_error:
        raise MessageError("a nowcast message needs exactly one of 'payload' and 'error'")
    if has_error:
        row["error"] = str(_field(body, "error", str))
        return row, []
    payload = _field(body, "payload", dict)
    try:
        rows = minutely_rows(payload, location_id)
    except PayloadError as exc:
        raise MessageError(f"payload: {exc}") from None
    if rows:
        first = datetime.fromtimestamp(rows[0][0], UTC)
        if not minute < first <= minute + MAX_FIRST_FORECAST_DELAY:
            raise MessageError(
                f"minutely starts at {first:%Y-%m-%d %H:%M:%S}, not in the minutes after the "
                f"call's minute {minute:%H:%M}"
            )
    return row, rows


def _excerpt(data: bytes | None) -> str | None:
    if data is None:
        return None
    return data[:RAW_EXCERPT_CHARS].decode("utf-8", errors="replace")


def parse_messages(raw: pl.DataFrame) -> pl.DataFrame:
    """Messages (``RAW_SCHEMA``) -> one ``PARSED_SCHEMA`` row each, with next-hour totals.

    Within the frame, a second nowcast for the same coordinate and minute is a ``duplicate``
    (the lowest sequence wins), so a total is never summed over two answers.
    """
    rows: list[dict[str, Any]] = []
    nowcasts: dict[tuple[str, datetime], tuple[int, Location, list]] = {}
    for seq, subject, data, published_at in raw.select(list(RAW_SCHEMA)).iter_rows():
        try:
            row, minutely = _parse_one(seq, subject, data, published_at)
        except MessageError as exc:
            rows.append(
                {
                    "seq": seq,
                    "subject": subject,
                    "kind": DEAD,
                    "published_at": published_at,
                    "dead_reason": str(exc),
                    "raw": _excerpt(data),
                }
            )
            continue
        if minutely is not None:
            key = (row["location_id"], row["minute"])
            if key in nowcasts:
                row["kind"] = DUPLICATE
                row["dead_reason"] = f"duplicate of sequence {nowcasts[key][0]}"
            else:
                location = Location(row["location_id"], row["location_id"], row["lat"], row["lon"])
                nowcasts[key] = (seq, location, minutely)
        rows.append(row)
    parsed = pl.DataFrame(
        rows, schema={k: v for k, v in PARSED_SCHEMA.items() if k not in _COMPUTED}
    )
    return _with_totals(parsed, nowcasts)


_COMPUTED = (
    "forecast_at",
    "precipitation_mm_per_h",
    "next_hour_precipitation_mm",
    "minutes_covered",
)


def _with_totals(parsed: pl.DataFrame, nowcasts: Mapping) -> pl.DataFrame:
    """Attach each nowcast's forecast minutes and next-hour total (the platform's formula)."""
    by_minute: dict[datetime, list[tuple[Location, list]]] = {}
    seqs: list[int] = []
    for (_, minute), (seq, location, minutely) in nowcasts.items():
        by_minute.setdefault(minute, []).append((location, minutely))
        seqs.append(seq)
    if by_minute:
        forecasts = pl.concat(
            [forecasts_frame(items, minute) for minute, items in by_minute.items()]
        )
        totals = next_hour_precipitation(forecasts).select(
            "location_id",
            pl.col("window_start").alias("minute"),
            "next_hour_precipitation_mm",
            "minutes_covered",
        )
        lists = forecasts.group_by("location_id", "fetched_minute", maintain_order=True).agg(
            "forecast_at", "precipitation_mm_per_h"
        )
        computed = lists.rename({"fetched_minute": "minute"}).join(
            totals, on=["location_id", "minute"], how="left"
        )
    else:
        computed = pl.DataFrame(
            schema={"location_id": pl.String(), "minute": pl.Datetime("us")}
            | {k: PARSED_SCHEMA[k] for k in _COMPUTED}
        )
    nowcast_rows = pl.col("kind") == NOWCAST
    joined = parsed.join(
        computed, on=["location_id", "minute"], how="left", nulls_equal=False
    ).with_columns(
        # A duplicate or an end marker carries no forecast of its own.
        *[pl.when(nowcast_rows).then(pl.col(k)).otherwise(None).alias(k) for k in _COMPUTED]
    )
    return joined.select([pl.col(k).cast(v) for k, v in PARSED_SCHEMA.items()]).sort("seq")


def raw_frame(messages: Iterable[tuple[int, str, bytes | None, datetime | None]]) -> pl.DataFrame:
    """``RAW_SCHEMA`` rows from ``(seq, subject, data, published_at)`` tuples (naive UTC)."""
    return pl.DataFrame(list(messages), schema=RAW_SCHEMA, orient="row")


# --- back to the warehouse's shape --------------------------------------------------------------


def latest_per_coordinate(parsed: pl.DataFrame) -> pl.DataFrame:
    """The first-published nowcast of each coordinate and minute (later copies are dropped)."""
    return (
        parsed.filter(pl.col("kind") == NOWCAST)
        .sort("seq")
        .unique(subset=["location_id", "minute"], keep="first", maintain_order=True)
    )


def forecast_rows(
    parsed: pl.DataFrame, minute: datetime, locations: list[Location]
) -> pl.DataFrame:
    """``rain_forecasts`` rows of ``minute`` (``transforms.FORECAST_SCHEMA``), registry order.

    Every registered coordinate appears: one with no message (its shard's producer was down) or
    an error record keeps a single null row, as a failed fetch always has.
    """
    naive_minute = _naive(minute)
    nowcasts = latest_per_coordinate(parsed.filter(pl.col("minute") == naive_minute)).select(
        "location_id", "forecast_at", "precipitation_mm_per_h"
    )
    registry = pl.DataFrame(
        {
            "location_id": [loc.location_id for loc in locations],
            "lat": [loc.lat for loc in locations],
            "lon": [loc.lon for loc in locations],
        },
        schema={"location_id": pl.String(), "lat": pl.Float64(), "lon": pl.Float64()},
    )
    return (
        registry.join(nowcasts, on="location_id", how="left", maintain_order="left")
        .explode("forecast_at", "precipitation_mm_per_h")
        .select(
            "location_id",
            "lat",
            "lon",
            pl.lit(naive_minute, dtype=pl.Datetime("us")).alias("fetched_minute"),
            pl.col("forecast_at").cast(pl.Datetime("us")),
            pl.col("precipitation_mm_per_h").cast(pl.Float64()),
        )
    )
