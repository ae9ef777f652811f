"""One minute of the nowcast stream for 10,000 simulated coordinates, phase by phase.

    .venv/bin/python benchmarks/rain_tick.py [--coordinates 10000] [--workers 16] [--repeat 3]

Phases, timed separately (best of --repeat):
  fetch            10,000 One Call requests through the real client (HttpClient + simulator
                   adapter; rate limit lifted to the coordinate count), JSON parsed and validated
  transform+write  rows -> polars frame -> next-hour totals -> both tables written to DuckDB the
                   way the IO manager does (delete partition + insert, one transaction)
  archive          raw payloads -> gzipped JSON lines in the object store (optional in the asset)
Then the whole minute once more through ``dg.materialize`` (Dagster, IO manager, checks),
with each step's seconds and how long the run held the single ``duckdb`` pool slot (the sum of
its pooled steps: what every other warehouse writer waits for).
Target (issue #2): transform+write <= 5 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from resources.object_store import ObjectStore
from weather_assets.locations import load_locations, shard_locations
from weather_assets.rain.client import OpenWeatherMapResource, fetch_nowcasts
from weather_assets.rain.loading import payload_line, write_archive
from weather_assets.rain.transforms import forecasts_frame, next_hour_precipitation


def write_locations(path: Path, n: int) -> None:
    rng = np.random.default_rng(42)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["location_id", "name", "lat", "lon"])
        for i in range(n):
            writer.writerow(
                [
                    f"loc{i:05d}",
                    f"Place {i}",
                    round(rng.uniform(-55, 70), 6),
                    round(rng.uniform(-180, 180), 6),
                ]
            )


def write_like_io_manager(conn, table: str, frame: pl.DataFrame, column: str, minute) -> None:
    arrow = frame.to_arrow()  # noqa: F841 (referenced by name in SQL)
    conn.begin()
    conn.execute("create schema if not exists weather")
    conn.execute(f"create table if not exists weather.{table} as select * from arrow limit 0")
    conn.execute(
        f"delete from weather.{table} where {column} >= ? and {column} < ?",
        [minute, minute + timedelta(minutes=1)],
    )
    conn.execute(f"insert into weather.{table} select * from arrow")
    conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinates", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rain_tick_"))
    locations_file = work / "locations.csv"
    write_locations(locations_file, args.coordinates)
    locations = load_locations(locations_file)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    naive_minute = minute.replace(tzinfo=None)
    owm = OpenWeatherMapResource(calls_per_minute=args.coordinates, max_workers=args.workers)
    shards = shard_locations(locations, owm.calls_per_minute)
    store = ObjectStore(local_dir=str(work / "objects"))
    conn = duckdb.connect(str(work / "warehouse.duckdb"))

    print(f"machine: {platform.machine()}, {platform.python_version()}, cores={_cores()}")
    print(f"coordinates: {len(locations)}, shards: {len(shards)}, workers: {args.workers}")
    best: dict[str, float] = {}
    rows = 0
    for attempt in range(1, args.repeat + 1):
        t0 = time.perf_counter()
        clients = owm.clients_for(len(shards), clock=lambda: minute)
        results = fetch_nowcasts(shards, clients, max_workers=args.workers)
        t1 = time.perf_counter()
        forecasts = forecasts_frame(((r.location, r.rows) for r in results), minute)
        totals = next_hour_precipitation(forecasts)
        write_like_io_manager(conn, "rain_forecasts", forecasts, "fetched_minute", naive_minute)
        write_like_io_manager(
            conn, "rolling_precipitation_sum", totals, "window_start", naive_minute
        )
        t2 = time.perf_counter()
        write_archive(
            store,
            minute,
            [payload_line(r.location.location_id, r.shard, r.payload, r.error) for r in results],
        )
        t3 = time.perf_counter()
        rows = forecasts.height
        failed = sum(r.error is not None for r in results)
        timings = {"fetch": t1 - t0, "transform+write": t2 - t1, "archive": t3 - t2}
        for phase, seconds in timings.items():
            best[phase] = min(best.get(phase, float("inf")), seconds)
        print(
            f"run {attempt}: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
            + f" ({rows} forecast rows, {totals.height} totals, {failed} failed)"
        )

    stored = conn.execute("select count(*) from weather.rain_forecasts").fetchone()[0]
    assert stored == rows, f"re-running the minute duplicated rows: {stored} != {rows}"
    print(
        f"best fetch:           {best['fetch']:.2f} s = {len(locations) / best['fetch']:,.0f} calls/s"
    )
    print(
        f"best transform+write: {best['transform+write']:.2f} s = "
        f"{rows / best['transform+write']:,.0f} rows/s (target <= 5 s)"
    )
    print(f"best archive:         {best['archive']:.2f} s")
    conn.close()
    elapsed, steps = _materialize_once(work, locations_file, minute, args)
    print(f"full minute via dg.materialize: {elapsed:.2f} s")
    for step, (pool, seconds) in steps.items():
        print(f"  step {step:<76} {seconds:6.2f} s  pool: {pool or '-'}")
    held = sum(seconds for pool, seconds in steps.values() if pool)
    print(f"  duckdb pool slot held: {held:.2f} s of {sum(s for _, s in steps.values()):.2f} s")


def _materialize_once(
    work: Path, locations_file: Path, minute: datetime, args
) -> tuple[float, dict[str, tuple[str | None, float]]]:
    """Wall seconds of the run, and per step its pool and seconds (start to success)."""
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from resources.warehouse import WarehouseIOManager
    from weather_assets.locations import CoordinateRegistry
    from weather_assets.partitions import MINUTE_FORMAT
    from weather_assets.rain.assets import RAIN_ASSETS
    from weather_assets.rain.checks import RAIN_CHECKS

    database = str(work / "dagster.duckdb")
    resources = {
        "io_manager": WarehouseIOManager(database=database),
        "warehouse": DuckDBResource(database=database),
        "object_store": ObjectStore(local_dir=str(work / "objects")),
        "coordinates": CoordinateRegistry(locations_file=str(locations_file)),
        "openweathermap": OpenWeatherMapResource(
            calls_per_minute=args.coordinates, max_workers=args.workers
        ),
    }
    # No log: the minute is fetched on demand (the path timed above), and the benchmark's
    # synthetic coordinates never reach a stream a `make run` on this machine may be running.
    previous = os.environ.get("NATS_URL")
    os.environ["NATS_URL"] = "nats://127.0.0.1:1"
    try:
        with dg.instance_for_test() as instance:
            t0 = time.perf_counter()
            result = dg.materialize(
                [*RAIN_ASSETS, *RAIN_CHECKS],
                resources=resources,
                instance=instance,
                partition_key=minute.strftime(MINUTE_FORMAT),
            )
            elapsed = time.perf_counter() - t0
            steps = _step_seconds(instance, result.run_id)
    finally:
        if previous is None:
            os.environ.pop("NATS_URL", None)
        else:
            os.environ["NATS_URL"] = previous
    assert result.success
    return elapsed, steps


def _step_seconds(instance, run_id: str) -> dict[str, tuple[str | None, float]]:
    import dagster as dg

    run = instance.get_run_by_id(run_id)
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    pools = {step.key: step.pool for step in plan.steps}
    started: dict[str, float] = {}
    steps: dict[str, tuple[str | None, float]] = {}
    for entry in instance.all_logs(run_id):
        kind = entry.dagster_event.event_type if entry.dagster_event else None
        if kind == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS and entry.step_key in started:
            seconds = entry.timestamp - started.pop(entry.step_key)
            steps[entry.step_key] = (pools.get(entry.step_key), seconds)
    return steps


def _cores() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
