"""Soak, full form: consecutive minute runs of the rain stream while the simulator fails.

    .venv/bin/python benchmarks/fault_soak.py [--minutes 30] [--fault-rate 0.2] [--coordinates 0]

Each minute is its own run (as the minute sensor launches them) through ``dg.materialize``
with the real resources, every coordinate of the registry (``--coordinates 0``), and
``SIMULATOR_FAULT_RATE`` of the simulated requests failing (5xx, 429 with Retry-After,
timeouts, malformed bodies). Prints per-run timings, the retries by reason, coordinates lost
after retries, and what the warehouse holds compared with a fault-free fetch of the same
minutes. The CI form is tests/hardening/test_fault_soak.py (20 coordinates).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg
import polars as pl

# Before the asset modules import: their BackfillPolicy warnings would drown the figures.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from resources.settings import load_settings  # noqa: E402
from tests.hardening.soak_driver import (  # noqa: E402
    consecutive_minutes,
    duplicate_forecast_rows,
    fault_free_totals,
    run_minutes,
    stored_totals,
    write_locations,
)
from weather_assets.locations import load_locations  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--coordinates", type=int, default=0, help="0: the whole registry")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fault-soak-") as tmp:
        os.environ["DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["SIMULATOR_FAULT_RATE"] = str(args.fault_rate)
        for name in ("SOURCE_MODE", "WAREHOUSE_PATH", "S3_BUCKET", "S3_ENDPOINT_URL"):
            os.environ.pop(name, None)
        if args.coordinates:
            registry = write_locations(
                Path(tmp) / "locations.csv", load_settings().locations_file, args.coordinates
            )
            os.environ["LOCATIONS_FILE"] = str(registry)
        settings = load_settings()
        from definitions import build_resources

        resources = build_resources(settings)
        locations = load_locations(settings.locations_file)
        keys = consecutive_minutes(args.minutes, minutes_ago=args.minutes + 10)

        print(
            f"{args.minutes} minute runs x {len(locations)} coordinates, "
            f"SIMULATOR_FAULT_RATE={args.fault_rate}"
        )
        started = time.perf_counter()
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            outcomes = run_minutes(keys, resources, instance)
        wall = time.perf_counter() - started

        reasons: Counter[str] = Counter()
        for outcome in outcomes:
            reasons.update(outcome.retries_by_reason)
        seconds = [o.seconds for o in outcomes]
        retries = sum(max(o.http_retries, 0) for o in outcomes)
        logged = sum(len(o.retry_log_lines) for o in outcomes)
        stored = stored_totals(settings.warehouse_path, keys)
        per_minute = stored.group_by("window_start").len()["len"]
        reference = fault_free_totals(keys, locations, resources["openweathermap"])
        joined = stored.join(reference, on=["location_id", "window_start"], suffix="_ref")
        matching = joined.filter(
            pl.col("minutes_covered").eq_missing(pl.col("minutes_covered_ref"))
            & pl.col("next_hour_precipitation_mm").eq_missing(
                pl.col("next_hour_precipitation_mm_ref")
            )
        ).height

        print(f"runs succeeded        {sum(o.success for o in outcomes)}/{len(outcomes)}")
        print(f"wall time             {wall:.1f} s")
        print(
            f"per run               median {statistics.median(seconds):.2f} s, "
            f"max {max(seconds):.2f} s"
        )
        print(f"requests              ~{len(outcomes) * len(locations)} first attempts")
        print(f"retries               {retries} (log lines with 'retrying in': {logged})")
        print(f"retries by reason     {dict(sorted(reasons.items()))}")
        lost = sum(max(o.failed_coordinates, 0) for o in outcomes)
        print(f"coordinates lost      {lost} (kept with a null total after every retry failed)")
        print(
            f"rows per minute       min {per_minute.min()}, max {per_minute.max()} "
            f"(expected {len(locations)})"
        )
        print(f"duplicate rows        {duplicate_forecast_rows(settings.warehouse_path)}")
        print(f"totals equal to a fault-free fetch  {matching}/{reference.height}")


if __name__ == "__main__":
    main()
