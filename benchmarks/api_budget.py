"""Cost of one grant from a budget: the in-process bucket vs the shared SQLite and PostgreSQL ones.

    .venv/bin/python benchmarks/api_budget.py [--calls 2000] [--threads 1,8]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

Each figure is ``--calls`` grants (never waiting: the limit is far above them) from one budget
by ``--threads`` threads of one process, as the HTTP base asks before every request. The
shared stores' per-grant cost is what a One Call request pays on top of its ~100-300 ms round
trip; without ``--pg`` (or ``RATE_LIMIT_DB_URL``) the PostgreSQL line is skipped.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--pg", default=os.environ.get(DB_URL_ENV_VAR))
    args = parser.parse_args()
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
