"""The platform's clock and its UTC conventions, in one place.

Code that needs "now" calls ``clock.utcnow()`` through the module (``from resources import
clock``), so a test sets the time once with ``monkeypatch.setattr(clock, "utcnow", ...)``
instead of patching a copy in every module. Timestamps stored in DuckDB and SQL are naive UTC
(``naive_utc``), so a reader's TimeZone setting never shifts a partition predicate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def floor_minute(moment: datetime) -> datetime:
    """The start of ``moment``'s minute."""
    return moment.replace(second=0, microsecond=0)


def naive_utc(moment: T) -> T:
    """An aware datetime as its naive UTC wall time; a naive datetime or any other value as is."""
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment
