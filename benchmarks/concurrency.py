"""Issue #8.2 at full size: 60 minute partitions and the ESIOS backfill through the run queue.

    .venv/bin/python benchmarks/concurrency.py [--minutes 60] [--months 24]
        [--job rain_minute_multiprocess_job|rain_minute_forkserver_job|rain_minute_job]
        [--timeout 14400] [--keep]

A fresh platform (dagster.yaml.template, temp DAGSTER_HOME and DATA_DIR, simulated sources,
``dagster-daemon run``), then at once ``dagster job backfill`` of ``--minutes`` minute
partitions and an asset backfill of the ESIOS assets over ``--months`` months from 2017-01;
waits for every run, stops the daemon's process group and prints runs, wall time, runs/min,
the most runs alive at once, lock failures and duplicate rows (tests/hardening/queue_harness.py
does the work; tests/hardening/test_concurrency.py is the reduced CI form). Set DAGSTER_PG_URL
(an empty database) for PostgreSQL instance storage.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hardening import queue_harness as harness

JOBS = (harness.RAIN_MULTIPROCESS_JOB, harness.RAIN_FORKSERVER_JOB, harness.RAIN_JOB)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--job", choices=JOBS, default=harness.RAIN_MULTIPROCESS_JOB)
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds for all runs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, instance)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="concurrency-bench-"))
    started = time.perf_counter()
    try:
        outcome = harness.run_concurrent_backfills(
            root,
            job=args.job,
            minutes=harness.rain_minutes(harness.default_first_minute(), args.minutes),
            months=harness.esios_months(date(2017, 1, 1), args.months),
            timeout_s=args.timeout,
        )
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - started

    for name, value in outcome.figures().items():
        print(f"{name:48} {value}")
    print(f"{'whole benchmark (setup, runs, teardown)':48} {total:.0f} s")
    problems = {
        "runs not SUCCESS": [r.job_name for r in outcome.runs if r.status != "SUCCESS"],
        "overlapping duckdb pool steps": harness.overlapping_steps(outcome.pool_intervals),
        "lock failures": outcome.lock_failures,
        "ESIOS months wrong": outcome.warehouse.esios_months_wrong,
        "runs not from the two backfills": outcome.other_runs,
        "processes left behind": outcome.leftover_processes,
    }
    for name, found in problems.items():
        if found:
            print(f"{name}: {len(found)}, e.g. {found[:3]}")
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
