"""Cost of one grant from a budget: the in-process bucket vs the shared SQLite and PostgreSQL ones.

    .venv/bin/python benchmarks/api_budget.py [--calls 2000] [--threads 1,8]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

Each figure is ``--calls`` grants (never waiting: the limit is far above them) from one budget
by ``--threads`` threads of one process, as the HTTP base asks before every request. The
shared stores' per-grant cost is what a One Call request pays on top of its ~100-300 ms round
trip; without ``--pg`` (or ``RATE_LIMIT_DB_URL``) the PostgreSQL line is skipped.

``--model`` prints instead what the window's guard and the free call per key cost a key used
every minute (a model of the sliding window, no I/O): a 60-a-minute key fetching 54 or 55
coordinates with 16 workers at 250 ms a call, plus 5 station polls at +15 s; the figure is when
the minute's last rain answer arrives, in the first minute and after 1 and 3 hours.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resources.api_budget import DB_URL_ENV_VAR, BudgetStore, budget_name
from resources.rate_limit import RateLimiter, TokenBucket

LIMIT = 10_000_000  # never reached: the figures are the bookkeeping alone


def per_grant_us(limiter: RateLimiter, calls: int, threads: int) -> tuple[float, float]:
    """(mean, p99) microseconds per ``acquire()`` over ``calls`` grants by ``threads`` threads."""
    per_thread = calls // threads

    def run(_: int) -> list[float]:
        times = []
        for _ in range(per_thread):
            start = time.perf_counter()
            limiter.acquire()
            times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        samples = [t for chunk in pool.map(run, range(threads)) for t in chunk]
    wall = time.perf_counter() - start
    p99 = statistics.quantiles(samples, n=100)[98]
    return wall / len(samples) * 1e6, p99 * 1e6


def last_answer_s(rain: int, guard_s: float, minutes: int = 180) -> list[float]:
    """Seconds into each minute at which its last rain answer arrives (model, see --model)."""
    limit, window, workers, latency, stations = 60, 60.0 + guard_s, 16, 0.25, 5
    grants: list[float] = []

    def grant(t: float) -> float:
        while len(grants) - bisect.bisect_right(grants, t - window) >= limit:
            t = grants[len(grants) - limit] + window + 1e-6  # when the oldest counted expires
        bisect.insort(grants, t)
        return t

    out = []
    for minute in range(minutes):
        start = minute * 60.0
        free = [start] * workers
        last = 0.0
        for _ in range(rain):
            done = grant(heapq.heappop(free)) + latency
            heapq.heappush(free, done)
            last = max(last, done - start)
        poll = start + 15
        for _ in range(stations):
            poll = grant(poll) + latency
        out.append(last)
    return out


def model() -> None:
    print(f"{'rain calls':>10} {'guard s':>8} {'1st min':>8} {'after 1 h':>10} {'after 3 h':>10}")
    for rain, guard in ((54, 0.0), (54, 0.05), (54, 0.2), (55, 0.2)):
        times = last_answer_s(rain, guard)
        print(f"{rain:>10} {guard:>8} {times[0]:>8.1f} {times[60]:>10.1f} {times[-1]:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--pg", default=os.environ.get(DB_URL_ENV_VAR))
    parser.add_argument("--model", action="store_true", help="the guard's cost, modelled")
    args = parser.parse_args()
    if args.model:
        model()
        return
    threads = [int(t) for t in args.threads.split(",")]
    key = uuid.uuid4().hex  # a fresh budget each run
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, RateLimiter]] = [
            ("in-process TokenBucket", TokenBucket(LIMIT / 60, LIMIT)),
            (
                "shared, SQLite file",
                BudgetStore(path=str(Path(tmp) / "rate_limits.sqlite")).budget(
                    "bench", key, LIMIT, 60.0
                ),
            ),
        ]
        if args.pg:
            stores.append(
                ("shared, PostgreSQL", BudgetStore(db_url=args.pg).budget("bench", key, LIMIT, 60))
            )
        print(f"{'limiter':<24} {'threads':>7} {'mean us/grant':>14} {'p99 us':>9}")
        for name, limiter in stores:
            for n in threads:
                mean, p99 = per_grant_us(limiter, args.calls, n)
                print(f"{name:<24} {n:>7} {mean:>14.1f} {p99:>9.1f}")
    if args.pg:  # the benchmark's budget is throw-away: leave no table behind
        import psycopg

        with psycopg.connect(args.pg.replace("+psycopg2", "")) as conn:
            conn.execute(f'drop table if exists "ratelimit___{budget_name("bench", key)}"')


if __name__ == "__main__":
    main()
