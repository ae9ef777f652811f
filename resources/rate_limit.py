"""Client-side rate limiting shared by the API clients.

The public APIs we call (OpenWeatherMap, ESIOS, NASA) enforce per-key quotas. Throttling
ourselves is cheaper than burning retries on HTTP 429s, and one bucket can be shared by every
thread that uses the same key. These buckets count one process's calls: live mode shares each
key's budget between processes through ``resources.api_budget`` (same ``RateLimiter`` contract);
these stay for simulated mode, tests and explicit use.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

# Float refills never land exactly on the requested amount; without a tolerance a fake clock
# could be asked to advance by less than its own resolution and the wait loop would never end.
_EPSILON = 1e-9


class RateLimiter(Protocol):
    """What `HttpClient` needs: block until one call is allowed, return the seconds waited."""

    def acquire(self) -> float: ...


class TokenBucket:
    """A thread-safe token bucket: bursts of up to `capacity`, sustained `rate_per_second`.

    `clock` and `sleep` are injectable so tests can run deterministically without real waiting.
    Waiting happens outside the lock, so one blocked caller never stalls the others.
    """

    def __init__(
        self,
        rate_per_second: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_second > 0:
            raise ValueError(
                f"TokenBucket rate_per_second must be > 0, got {rate_per_second!r} "
                "(a zero rate would block every caller forever)"
            )
        if not capacity >= 1:
            raise ValueError(
                f"TokenBucket capacity must be >= 1, got {capacity!r} "
                "(a bucket smaller than one token can never grant a call)"
            )
        self.rate_per_second = float(rate_per_second)
        self.capacity = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity  # start full: the first burst goes out at once
        self._updated = clock()

    @classmethod
    def per_minute(
        cls,
        calls: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> TokenBucket:
        """A bucket for quotas stated as "N calls per minute" (burst of N, then N/60 per s)."""
        if not calls >= 1:
            raise ValueError(f"TokenBucket.per_minute needs calls >= 1, got {calls!r}")
        return cls(calls / 60.0, calls, clock=clock, sleep=sleep)

    @property
    def available(self) -> float:
        """Tokens available right now (for diagnostics; may change immediately)."""
        with self._lock:
            self._refill()
            return self._tokens

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` are taken; return the seconds spent waiting (0.0 if none)."""
        self._check_request(tokens)
        start: float | None = None
        while True:
            with self._lock:
                now = self._refill()
                if self._tokens >= tokens - _EPSILON:
                    self._tokens -= tokens
                    return 0.0 if start is None else max(0.0, now - start)
                wait = (tokens - self._tokens) / self.rate_per_second
                if start is None:
                    start = now
            # Sleep without the lock; another thread may take the refill first, so loop.
            self._sleep(wait)

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take `tokens` if available right now; never blocks."""
        self._check_request(tokens)
        with self._lock:
            self._refill()
            if self._tokens >= tokens - _EPSILON:
                self._tokens -= tokens
                return True
            return False

    def _check_request(self, tokens: float) -> None:
        if not tokens > 0:
            raise ValueError(f"tokens must be > 0, got {tokens!r}")
        if tokens > self.capacity:
            raise ValueError(
                f"cannot take {tokens!r} tokens from a bucket of capacity {self.capacity!r}: "
                "the request could never be granted"
            )

    def _refill(self) -> float:
        # Caller holds the lock. Returns the clock reading used.
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_second)
            self._updated = now
        return now

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_second={self.rate_per_second!r}, capacity={self.capacity!r})"


class SlidingWindowLimiter:
    """At most `calls` acquisitions in any `window_s` seconds, exactly.

    For quotas stated per hour (NASA's 1,000 requests an hour): a token bucket of that size
    would allow up to twice the quota in the first hour, this never does. Same `acquire()`
    contract as `TokenBucket`, so `HttpClient` takes either.
    """

    def __init__(
        self,
        calls: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not calls >= 1:
            raise ValueError(f"SlidingWindowLimiter calls must be >= 1, got {calls!r}")
        if not window_s > 0:
            raise ValueError(f"SlidingWindowLimiter window_s must be > 0, got {window_s!r}")
        self.calls = int(calls)
        self.window_s = float(window_s)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._granted: deque[float] = deque()

    @classmethod
    def per_hour(
        cls,
        calls: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> SlidingWindowLimiter:
        return cls(calls, 3600.0, clock=clock, sleep=sleep)

    @property
    def available(self) -> int:
        """Calls that would be granted right now."""
        with self._lock:
            self._expire(self._clock())
            return self.calls - len(self._granted)

    def acquire(self) -> float:
        """Block until a call is allowed; return the seconds spent waiting (0.0 if none)."""
        start: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                self._expire(now)
                if len(self._granted) < self.calls:
                    self._granted.append(now)
                    return 0.0 if start is None else max(0.0, now - start)
                wait = max(self._granted[0] + self.window_s - now, _EPSILON)
                if start is None:
                    start = now
            self._sleep(wait)

    def _expire(self, now: float) -> None:
        while self._granted and self._granted[0] + self.window_s <= now:
            self._granted.popleft()

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter(calls={self.calls!r}, window_s={self.window_s!r})"
