"""One API budget per key, shared by every process that spends it.

The in-process limiters of ``resources.rate_limit`` count one process's calls, but a key's quota
is spent by every producer, Dagster run and Spark task that uses the key. A ``SharedBudget``
keeps the key's call log where all of them reach it, in a ``pyrate-limiter`` bucket:

- a SQLite file (default ``DATA_DIR/rate_limits.sqlite``) behind a file lock: every process on
  one host;
- PostgreSQL (``RATE_LIMIT_DB_URL``): processes on several hosts, timed by the database's clock.

A budget is named by the API and the sha256 of the key, never the key itself, so the store holds
no secret. The limit is a sliding window: at most ``calls`` granted in any ``window_s``.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pyrate_limiter import AbstractBucket, PostgresBucket, Rate, RateItem, SQLiteBucket

__all__ = [
    "DB_URL_ENV_VAR",
    "DEFAULT_FILE_NAME",
    "DEFAULT_GUARD_S",
    "BudgetStore",
    "SharedBudget",
    "budget_file",
    "budget_name",
    "close_budgets",
    "store_from",
]

DB_URL_ENV_VAR = "RATE_LIMIT_DB_URL"
DEFAULT_FILE_NAME = "rate_limits.sqlite"
# A call is counted when it is granted, the API counts it when it arrives; a grant waits this
# much longer than the window so a request held up on the way (a slow process, a slow network)
# is not counted by the API in the same window as one granted just after it expired here.
DEFAULT_GUARD_S = 0.2
# PostgreSQL names the table "ratelimit___<name>" and its index "timestampindex_<name>": both
# must fit its 63-character identifiers.
_MAX_API_SLUG = 20
_DIGEST_CHARS = 24
# Expired entries are deleted at most this often (they are never counted, only stored).
_LEAK_EVERY_S = 60.0


def budget_name(api: str, key: str) -> str:
    """The budget's identity: ``<api>_<sha256(key) prefix>``, safe to store and to show."""
    slug = re.sub(r"[^a-z0-9]+", "_", api.lower()).strip("_")
    if not slug or len(slug) > _MAX_API_SLUG:
        raise ValueError(
            f"api name {api!r} must have 1 to {_MAX_API_SLUG} letters, digits or underscores"
        )
    return f"{slug}_{hashlib.sha256(key.encode('utf-8')).hexdigest()[:_DIGEST_CHARS]}"


class SharedBudget:
    """``RateLimiter`` over a shared bucket: ``acquire()`` blocks until the key's budget allows a
    call and returns the seconds waited. Thread-safe; every process with a ``SharedBudget`` of
    the same name on the same store draws from the same ``calls`` per ``window_s``."""

    def __init__(
        self,
        bucket: AbstractBucket,
        name: str,
        calls: int,
        window_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._bucket = bucket
        self.name = name
        self.calls = calls
        self.window_s = window_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_leak = 0.0

    def _store_lock(self) -> AbstractContextManager[object]:
        # SQLite: hold the file lock while reading the clock, so a call's timestamp is the
        # moment it is granted, not the moment it started queueing behind other processes.
        return self._bucket.lock if isinstance(self._bucket, SQLiteBucket) else nullcontext()

    def _try(self) -> int:
        """Take one call if the budget allows it now: 0, else the milliseconds to wait."""
        with self._lock, self._store_lock():
            item = RateItem(self.name, int(self._bucket.now()))
            if self._bucket.put(item):
                if time.monotonic() - self._last_leak >= _LEAK_EVERY_S:
                    self._last_leak = time.monotonic()
                    self._bucket.leak(item.timestamp)
                return 0
            wait = self._bucket.waiting(item)
        if not isinstance(wait, int) or wait < 0:
            raise RuntimeError(f"budget {self.name}: one call can never fit ({wait!r})")
        return max(wait, 1)  # 0 means another process holds the store: try again shortly

    def try_acquire(self) -> bool:
        """Take one call if the budget allows it right now; never blocks."""
        return self._try() == 0

    def acquire(self) -> float:
        """Block until one call is allowed; return the seconds spent waiting (0.0 if none)."""
        start = time.monotonic()
        waited = False
        while (wait_ms := self._try()) > 0:
            waited = True
            self._sleep(wait_ms / 1000)
        return time.monotonic() - start if waited else 0.0

    def __repr__(self) -> str:
        return f"SharedBudget({self.name!r}, calls={self.calls}, window_s={self.window_s:g})"


@dataclass(frozen=True)
class BudgetStore:
    """Where the shared budgets live: a SQLite ``path`` (one host) or a PostgreSQL ``db_url``
    (several hosts; it wins when both are set). Plain values, so Spark tasks can receive it."""

    path: str | None = None
    db_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.db_url:
            scheme = urlsplit(self.db_url).scheme.split("+", 1)[0]
            if scheme not in ("postgresql", "postgres"):
                raise ValueError(
                    f"{DB_URL_ENV_VAR} must be a postgresql://user:password@host:5432/db URL, "
                    f"got one with scheme {urlsplit(self.db_url).scheme!r}"
                )
        elif not self.path:
            raise ValueError(f"a budget store needs a SQLite path or {DB_URL_ENV_VAR}")

    @property
    def where(self) -> str:
        """The store, for messages: never the password."""
        if self.db_url:
            parts = urlsplit(self.db_url)
            return f"PostgreSQL {parts.hostname}:{parts.port or 5432}{parts.path}"
        return f"SQLite {self.path}"

    def budget(
        self, api: str, key: str, calls: int, window_s: float, *, guard_s: float = DEFAULT_GUARD_S
    ) -> SharedBudget:
        """The budget of ``key`` on ``api``: at most ``calls`` in any ``window_s`` seconds,
        shared with every other process using this store. One per process and budget."""
        if calls < 1:
            raise ValueError(f"a budget needs calls >= 1, got {calls!r}")
        if not window_s > 0 or guard_s < 0:
            raise ValueError(f"a budget needs window_s > 0 and guard_s >= 0, got {window_s!r}")
        name = budget_name(api, key)
        cache_key = (os.getpid(), self, name, calls, window_s, guard_s)
        with _CACHE_LOCK:
            budget = _BUDGETS.get(cache_key)
            if budget is None:
                rate = Rate(calls, round((window_s + guard_s) * 1000))
                budget = SharedBudget(self._bucket(name, rate), name, calls, window_s)
                _BUDGETS[cache_key] = budget
        return budget

    def _bucket(self, name: str, rate: Rate) -> AbstractBucket:
        if self.db_url:
            return PostgresBucket(_pool(self.db_url), name, [rate])
        assert self.path is not None
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteBucket.init_from_file(
            [rate], table=name, db_path=str(self.path), use_file_lock=True
        )


def store_from(path: str | os.PathLike[str] | None, db_url: str | None) -> BudgetStore | None:
    """The store configured by a resource's fields; None when neither is set (in-process)."""
    if db_url and db_url.strip():
        return BudgetStore(path=str(path) if path else None, db_url=db_url.strip())
    return BudgetStore(path=str(path)) if path else None


# Per process: a connection may not cross a fork, hence the pid in the keys.
_CACHE_LOCK = threading.Lock()
_BUDGETS: dict[tuple, SharedBudget] = {}
_POOLS: dict[tuple[int, str], object] = {}


def close_budgets() -> None:
    """Close this process's budgets and PostgreSQL pools (tests dropping a database, shutdown);
    the next ``BudgetStore.budget`` opens them again."""
    with _CACHE_LOCK:
        budgets = [b for k, b in _BUDGETS.items() if k[0] == os.getpid()]
        pools = [p for k, p in _POOLS.items() if k[0] == os.getpid()]
        _BUDGETS.clear()
        _POOLS.clear()
    for budget in budgets:
        if isinstance(budget._bucket, SQLiteBucket):
            budget._bucket.close()
    for pool in pools:
        pool.close()


def _pool(db_url: str):
    from psycopg_pool import ConnectionPool

    # SQLAlchemy-style URLs (postgresql+psycopg2://) name a driver libpq does not know.
    parts = urlsplit(db_url)
    conninfo = parts._replace(scheme=parts.scheme.split("+", 1)[0]).geturl()
    key = (os.getpid(), conninfo)
    pool = _POOLS.get(key)
    if pool is None:
        pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True)
        _POOLS[key] = pool
    return pool


def budget_file(data_dir: str | os.PathLike[str]) -> str:
    """The default SQLite store, ``DATA_DIR/rate_limits.sqlite``, as an absolute path (Spark
    workers and producers may run from another directory)."""
    return str((Path(data_dir) / DEFAULT_FILE_NAME).resolve())
