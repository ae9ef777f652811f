"""TokenBucket: deterministic behaviour under a fake clock, and the real-thread guarantee."""

from __future__ import annotations

import threading
import time

import pytest

from resources.rate_limit import SlidingWindowLimiter, TokenBucket


class FakeClock:
    """A clock that only moves when the bucket sleeps (or the test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the bucket should never ask for a non-positive sleep"
        self.sleeps.append(seconds)
        self.now += seconds


def make_bucket(rate: float, capacity: float) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate, capacity, clock=clock, sleep=clock.sleep), clock


def test_starts_full_then_waits_for_refill() -> None:
    bucket, clock = make_bucket(rate=2.0, capacity=3)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert clock.sleeps == []

    waited = bucket.acquire()
    assert waited == pytest.approx(0.5)
    assert clock.sleeps == [pytest.approx(0.5)]
    assert bucket.available == pytest.approx(0.0, abs=1e-9)


def test_acquire_returns_wait_for_multiple_tokens() -> None:
    bucket, clock = make_bucket(rate=4.0, capacity=4)
    assert bucket.acquire(4) == 0.0
    assert bucket.acquire(2) == pytest.approx(0.5)
    assert sum(clock.sleeps) == pytest.approx(0.5)


def test_fractional_tokens() -> None:
    bucket, _ = make_bucket(rate=1.0, capacity=1)
    assert bucket.try_acquire(0.5)
    assert bucket.try_acquire(0.5)
    assert not bucket.try_acquire(0.5)


def test_refill_is_capped_at_capacity() -> None:
    bucket, clock = make_bucket(rate=10.0, capacity=2)
    bucket.acquire(2)
    clock.now += 3600  # an hour idle must not bank 36,000 tokens
    assert bucket.available == pytest.approx(2.0)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(0.1)


def test_try_acquire_never_sleeps() -> None:
    bucket, clock = make_bucket(rate=1.0, capacity=1)
    assert bucket.try_acquire() is True
    assert bucket.try_acquire() is False
    assert clock.sleeps == []
    clock.now += 1.0
    assert bucket.try_acquire() is True


def test_per_minute() -> None:
    clock = FakeClock()
    bucket = TokenBucket.per_minute(60, clock=clock, sleep=clock.sleep)
    assert bucket.rate_per_second == pytest.approx(1.0)
    assert bucket.capacity == 60
    for _ in range(60):
        assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(1.0)

    slow = TokenBucket.per_minute(30, clock=clock, sleep=clock.sleep)
    assert slow.rate_per_second == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("rate", "capacity", "match"),
    [
        (0, 1, "rate_per_second must be > 0"),
        (-1.0, 1, "rate_per_second must be > 0"),
        (1.0, 0, "capacity must be >= 1"),
        (1.0, 0.5, "capacity must be >= 1"),
    ],
)
def test_invalid_configuration(rate: float, capacity: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenBucket(rate, capacity)


def test_per_minute_rejects_zero_calls() -> None:
    with pytest.raises(ValueError, match="calls >= 1"):
        TokenBucket.per_minute(0)


def test_impossible_requests_fail_fast_instead_of_blocking_forever() -> None:
    bucket, _ = make_bucket(rate=1.0, capacity=2)
    with pytest.raises(ValueError, match="could never be granted"):
        bucket.acquire(3)
    with pytest.raises(ValueError, match="could never be granted"):
        bucket.try_acquire(3)
    with pytest.raises(ValueError, match="must be > 0"):
        bucket.acquire(0)


def test_lock_is_released_while_sleeping() -> None:
    """If acquire() slept holding the (non-reentrant) lock, touching the bucket would hang."""
    seen: list[float] = []
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        seen.append(bucket.available)  # needs the lock
        clock.sleep(seconds)

    bucket = TokenBucket(1.0, 1, clock=clock, sleep=sleep)
    bucket.acquire()
    worker = threading.Thread(target=bucket.acquire, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "acquire() deadlocked: it sleeps while holding the lock"
    assert len(seen) == 1


def test_real_threads_never_exceed_capacity_plus_rate_times_elapsed() -> None:
    rate, capacity = 200.0, 5
    n_threads, per_thread = 8, 6
    granted_at: list[float] = []
    waits: list[float] = []
    record = threading.Lock()
    made: dict[str, object] = {}

    def create_bucket() -> None:
        # Runs once all threads are ready, so the start-up time does not add slack to the bound.
        made["start"] = time.monotonic()  # before the bucket exists: no grant can predate it
        made["bucket"] = TokenBucket(rate, capacity)

    barrier = threading.Barrier(n_threads, action=create_bucket)

    def worker() -> None:
        barrier.wait()
        bucket = made["bucket"]
        assert isinstance(bucket, TokenBucket)
        for _ in range(per_thread):
            waited = bucket.acquire()
            now = time.monotonic()  # >= the grant instant, so the check below is sound
            with record:
                granted_at.append(now)
                waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)

    start = made["start"]
    assert isinstance(start, float)
    total = n_threads * per_thread
    assert len(granted_at) == total
    for k, t in enumerate(sorted(granted_at), start=1):
        allowed = capacity + rate * (t - start)
        assert k <= allowed + 1e-6, f"grant #{k} at +{t - start:.4f} s exceeds {allowed:.2f}"

    # And the limiter really throttled: the tokens beyond the burst needed refill time.
    elapsed = max(granted_at) - start
    assert elapsed >= (total - capacity) / rate * 0.95
    assert all(w >= 0 for w in waits)


def make_window(calls: int, window_s: float) -> tuple[SlidingWindowLimiter, FakeClock]:
    clock = FakeClock()
    return SlidingWindowLimiter(calls, window_s, clock=clock, sleep=clock.sleep), clock


def test_window_grants_the_quota_then_waits_for_the_oldest_call_to_age_out() -> None:
    limiter, clock = make_window(calls=3, window_s=3600)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 100
    waited = limiter.acquire()
    # The first call was at t0; the fourth may go at t0 + 3600, i.e. 3500 s after asking.
    assert waited == pytest.approx(3500)
    assert clock.now == pytest.approx(1000 + 3600)


def test_window_never_exceeds_its_quota_in_any_window() -> None:
    """Unlike a token bucket of the same size, no hour ever sees more than the quota."""
    limiter, clock = make_window(calls=10, window_s=60)
    times = []
    for _ in range(55):
        limiter.acquire()
        times.append(clock.now)
        clock.now += 0.7
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t < start + 60]
        assert len(in_window) <= 10


def test_window_available_and_validation() -> None:
    limiter, clock = make_window(calls=2, window_s=10)
    assert limiter.available == 2
    limiter.acquire()
    assert limiter.available == 1
    clock.now += 10
    assert limiter.available == 2
    assert SlidingWindowLimiter.per_hour(1000).window_s == 3600
    with pytest.raises(ValueError, match="calls must be >= 1"):
        SlidingWindowLimiter(0, 10)
    with pytest.raises(ValueError, match="window_s must be > 0"):
        SlidingWindowLimiter(1, 0)
