"""How much a day of minute runs adds to the Dagster instance, and what the purge leaves.

    .venv/bin/python benchmarks/run_history.py [--runs 30]

Runs the real ``rain_minute_job`` (simulated source, the default 60 coordinates, no log: each
minute fetched on demand) for ``--runs`` consecutive minutes on a fresh instance built from
the ``dagster.yaml`` ``make run`` writes (SQLite storage), then measures DAGSTER_HOME (``du``
of its files, per part), extrapolates to a day (1,440 runs), and runs ``run_history_job`` with
the clock past the retention: the size left is what the purge keeps. A full day of runs
would take hours here, hence the sample and the extrapolation (printed as such).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MINUTES_PER_DAY = 1440
PLATFORM_VARIABLES = (
    "SOURCE_MODE",
    "WAREHOUSE_PATH",
    "S3_BUCKET",
    "LOCATIONS_FILE",
    "DAGSTER_PG_URL",
)


def du(path: Path) -> dict[str, tuple[int, int]]:
    """Bytes and files under ``path``, per part: run event logs, run storage, compute logs."""
    parts = {
        "history/runs/<run_id>.db (event logs)": 0,
        "history/runs/index.db": 0,
        "history/runs.db (run records)": 0,
        "storage/<run_id> (compute logs)": 0,
        "other": 0,
    }
    files = dict.fromkeys(parts, 0)
    for root, _, names in os.walk(path):
        for name in names:
            full = Path(root) / name
            rel = full.relative_to(path).as_posix()
            size = full.stat().st_blocks * 512  # on disk, as du counts
            if rel.startswith("history/runs/index.db"):
                key = "history/runs/index.db"
            elif rel.startswith("history/runs/"):
                key = "history/runs/<run_id>.db (event logs)"
            elif rel.startswith("history/runs.db"):
                key = "history/runs.db (run records)"
            elif rel.startswith("storage/"):
                key = "storage/<run_id> (compute logs)"
            else:
                key = "other"
            parts[key] += size
            files[key] += 1
    return {k: (parts[k], files[k]) for k in parts}


def show(title: str, sizes: dict[str, tuple[int, int]], scale: float = 1.0) -> int:
    total = sum(b for b, _ in sizes.values())
    count = sum(f * (scale if "<run_id>" in k else 1) for k, (_, f) in sizes.items())
    print(f"{title}: {total * scale / 1e6:,.1f} MB in {count:,.0f} files")
    for key, (size, n) in sizes.items():
        per_run = "<run_id>" in key  # one file per run: their count scales, the others' not
        print(
            f"    {key:42s} {size * scale / 1e6:10,.1f} MB {n * (scale if per_run else 1):10,.0f} files"
        )
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="run_history_bench_"))
    home, data = root / "dagster_home", root / "data"
    for name in PLATFORM_VARIABLES:
        os.environ.pop(name, None)
    os.environ |= {
        "DAGSTER_HOME": str(home),
        "DATA_DIR": str(data),
        "NATS_URL": "nats://127.0.0.1:1",  # no log: never a `make run`'s server
    }
    import dagster as dg

    from resources import clock
    from resources.instance_config import main as write_instance_config
    from resources.run_history import Cutoffs, purge_runs
    from weather_assets.rain.run_history import PURGED_JOBS

    assert write_instance_config([str(home / "dagster.yaml")]) == 0
    from definitions import defs

    job = defs.resolve_job_def("rain_minute_job")
    day = datetime.now(UTC).date() - timedelta(days=1)
    first = datetime(day.year, day.month, day.day, 10, 0, tzinfo=UTC)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        empty = sum(b for b, _ in du(home).values())
        started = time.perf_counter()
        for i in range(args.runs):
            key = (first + timedelta(minutes=i)).strftime("%Y-%m-%d-%H:%M")
            assert job.execute_in_process(instance=instance, partition_key=key).success, key
        run_s = (time.perf_counter() - started) / args.runs
        sizes = du(home)
        print(f"{args.runs} real rain_minute_job runs, {run_s:.1f} s each, {home}")
        total = show(f"DAGSTER_HOME after {args.runs} minute runs", sizes)
        per_run = (total - empty) / args.runs
        print(f"per minute run: {per_run / 1e3:,.0f} KB")
        show(
            f"extrapolated to a day ({MINUTES_PER_DAY} runs, x{MINUTES_PER_DAY / args.runs:.0f})",
            sizes,
            MINUTES_PER_DAY / args.runs,
        )
        print(
            f"without the purge: {per_run * MINUTES_PER_DAY / 1e6:,.0f} MB a day, "
            f"{per_run * MINUTES_PER_DAY * 30 / 1e9:,.1f} GB and "
            f"{(sizes['history/runs/<run_id>.db (event logs)'][1] + sizes['storage/<run_id> (compute logs)'][1]) / args.runs * MINUTES_PER_DAY * 30:,.0f} files a month"
        )

        later = clock.utcnow() + timedelta(hours=49)
        started = time.perf_counter()
        report = purge_runs(instance, PURGED_JOBS, Cutoffs.from_retention(later, 48, 14))
        purge_s = time.perf_counter() - started
        print(
            f"purge (clock +49 h, RUN_RETENTION_HOURS=48): {report.deleted} runs deleted in "
            f"{purge_s:.2f} s ({purge_s / max(report.deleted, 1) * 1e3:.0f} ms a run), "
            f"{report.bytes_freed / 1e6:.1f} MB of files"
        )
        show("DAGSTER_HOME after the purge", du(home))
        print(
            f"steady state with the purge: at most 48 h of minute runs, about "
            f"{per_run * MINUTES_PER_DAY * 2 / 1e6:,.0f} MB (+ the index and run databases, "
            "whose freed pages are reused)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
