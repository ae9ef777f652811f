"""The weather-observations ETL at benchmark scale: PySpark against polars on the same files.

    .venv/bin/python benchmarks/spark_etl.py [--days 7] [--stations 10] [--interval 1.0]
        [--driver-memory 4g] [--workdir DIR] [--keep]

Generates ``--days`` UTC days of raw readings every ``--interval`` seconds for the first
``--stations`` locations (defaults: 7 x 10 x 86,400 = ~6 million rows, junk included) with the
station simulator, as daily CSV files in the object-store layout
(``weather/observations_raw/date=YYYY-MM-DD/readings.csv``). Generation is not timed.

Then, timed, the pipeline the assets run: read CSV -> clean -> write clean parquet (partitioned
by date) -> read it back -> 15-minute and hourly aggregates -> write them. Once with PySpark
(``SPARK_MASTER``, default ``local[2]``; session start timed separately) and once with the same
rules in polars; both must report the same counts. Prints wall times, rows/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resources.settings import load_settings  # noqa: E402
from weather_assets.locations import load_locations  # noqa: E402
from weather_assets.observations import etl_polars as op  # noqa: E402
from weather_assets.observations import etl_spark as osp  # noqa: E402

FIRST_DAY = date(2026, 11, 16)
SORT_CLEAN = ("station_id", "observed_at")
SORT_AGG = ("station_id", "bucket_start")


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def generate(root: Path, days: int, stations: int, interval_s: float) -> tuple[list[str], int]:
    """Daily raw CSV files; returns their paths and the row count."""
    try:
        from weather_assets.stations.feed import to_csv_bytes
        from weather_assets.stations.simulator import raw_readings
    except ImportError as exc:
        sys.exit(
            "benchmarks/spark_etl.py needs weather_assets/stations/simulator.py "
            f"(raw_readings, to_csv_bytes), which cannot be imported: {exc}"
        )
    locations = load_locations(load_settings().locations_file)[:stations]
    paths, rows = [], 0
    for offset in range(days):
        day = FIRST_DAY + timedelta(days=offset)
        frame = raw_readings(locations, day, interval_s=interval_s)
        path = root / "weather" / "observations_raw" / f"date={day.isoformat()}" / "readings.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_csv_bytes(frame))
        paths.append(str(path))
        rows += frame.height
    return paths, rows


def run_spark(paths: list[str], out: Path, master: str, driver_memory: str) -> dict:
    from pyspark.sql import functions as F

    from resources.spark import cluster_facts, spark_resource_from_env

    t0 = time.perf_counter()
    resource = spark_resource_from_env(
        {
            "spark.master": master,
            "spark.driver.memory": driver_memory,
            "spark.app.name": "spark-etl-benchmark",
            "spark.sql.warehouse.dir": str(out / "warehouse"),
        }
    )
    spark = resource.spark_session
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = now - since
        return now

    t = time.perf_counter()
    clean, counts = osp.clean_observations(osp.read_raw_csv(spark, paths))
    t = mark("read+clean (counts)", t)
    osp.write_partitioned_parquet(clean, str(out / "clean"), "observed_date", sort_by=SORT_CLEAN)
    t = mark("write clean", t)
    stored = spark.read.parquet(str(out / "clean"))
    for minutes in (15, 60):
        table = osp.aggregate(stored, minutes)
        path = str(out / f"agg_{minutes}min")
        osp.write_partitioned_parquet(table, path, "observed_date", sort_by=SORT_AGG)
        t = mark(f"aggregate {minutes} min + write", t)
    total = time.perf_counter() - started
    hourly_rows = spark.read.parquet(str(out / "agg_60min")).agg(F.count("*")).first()[0]
    facts = cluster_facts(spark)
    spark.stop()
    return {
        "session_start": started - t0,
        "total": total,
        "phases": phases,
        "counts": counts,
        "hourly_rows": hourly_rows,
        "facts": facts,
    }


def run_polars(paths: list[str], out: Path) -> dict:
    phases: dict[str, float] = {}
    started = t = time.perf_counter()

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = now - since
        return now

    clean, counts = op.clean_observations(op.read_raw_csv(paths))
    t = mark("read+clean (counts)", t)
    clean.write_parquet(out / "clean", partition_by="observed_date")
    t = mark("write clean", t)
    stored = pl.read_parquet(out / "clean" / "**" / "*.parquet", hive_partitioning=True)
    hourly_rows = 0
    for minutes in (15, 60):
        table = op.aggregate(stored, minutes)
        table.write_parquet(out / f"agg_{minutes}min", partition_by="observed_date")
        hourly_rows = table.height
        t = mark(f"aggregate {minutes} min + write", t)
    return {
        "total": time.perf_counter() - started,
        "phases": phases,
        "counts": counts,
        "hourly_rows": hourly_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument(
        "--driver-memory",
        default=os.environ.get("SPARK_DRIVER_MEMORY") or "4g",
        help="local mode: the driver is the executor (Spark's default, 1g, spills at this size)",
    )
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here")
    parser.add_argument("--keep", action="store_true", help="do not delete the work directory")
    args = parser.parse_args()
    master = os.environ.get("SPARK_MASTER") or "local[2]"

    work = args.workdir or Path(tempfile.mkdtemp(prefix="spark_etl_"))
    work.mkdir(parents=True, exist_ok=True)
    print("command: " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}".rstrip()
        + f", cores={_cores()}, memory={_memory_gb():.0f} GiB, Python {platform.python_version()}"
    )
    print(f"polars {pl.__version__}, Spark master {master}, driver memory {args.driver_memory}")
    print("load average (1/5/15 min): " + "/".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"work dir: {work}")
    try:
        t0 = time.perf_counter()
        paths, rows = generate(work, args.days, args.stations, args.interval)
        size = sum(Path(p).stat().st_size for p in paths)
        print(
            f"input: {args.days} days x {args.stations} stations every {args.interval:g} s = "
            f"{rows:,} rows, {len(paths)} CSV files, {size / 2**20:,.0f} MiB "
            f"(generated in {time.perf_counter() - t0:.1f} s, not timed)"
        )

        spark = run_spark(paths, work / "spark", master, args.driver_memory)
        facts = spark["facts"]
        executors = ", ".join(
            f"{e['id']} {e['cores']} cores {e['memory']}" for e in facts["executors"]
        )
        print(
            f"\nPySpark {facts['spark_version']} on {facts['master']} ({executors}; "
            f"heap {facts['driver_max_heap_bytes'] / 2**30:.1f} GiB; "
            f"Java {facts['java_version']}); "
            f"session start {spark['session_start']:.1f} s (not in total)"
        )
        _report(spark, rows)

        polars = run_polars(paths, work / "polars")
        print(f"\npolars {pl.__version__}")
        _report(polars, rows)

        if spark["counts"] != polars["counts"]:
            print(
                f"\nWARNING: counts differ:\n spark  {spark['counts']}\n polars {polars['counts']}"
            )
        else:
            print(f"\ncounts (both engines): {spark['counts']}")
        print(f"hourly rows: spark {spark['hourly_rows']:,}, polars {polars['hourly_rows']:,}")
        print(
            f"ratio: PySpark / polars = {spark['total'] / polars['total']:.1f}x wall time "
            f"({spark['total']:.1f} s vs {polars['total']:.1f} s)"
        )
        print("load average at the end: " + "/".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _report(result: dict, rows: int) -> None:
    for phase, seconds in result["phases"].items():
        print(f"  {phase:<26} {seconds:7.1f} s")
    total = result["total"]
    print(f"  {'total':<26} {total:7.1f} s = {rows / total:,.0f} input rows/s")


if __name__ == "__main__":
    main()
