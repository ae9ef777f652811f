"""Held-out next-hour MSE of our model vs the brief's reference vs persistence.

    .venv/bin/python benchmarks/temperature_model.py [--seeds 0 1 2] [--days 30] [--workers 2]
        [--csv HOURLY.csv ...]

Every number is ``weather_assets.temperature.model.evaluate``: rolling origins every 24 h, both
models retrained on the 120 h before each origin (the daily retrain on ~5 days of history),
each of the next 24 hours predicted one step ahead from the true history; MSE in °C².

Three kinds of data:
  simulator  seeds x seasons (30 days from 1 Jan/Apr/Jul/Oct) x five places from 34°S to 60°N
             (weather_assets.stations.simulator hourly actuals);
  regimes    series from generators that share nothing with the simulator, to check that the
             model degrades towards persistence, not below it, when there is little to learn:
             stormy (weak diurnal cycle, random fronts of several °C), ar (no diurnal cycle at
             all, autocorrelated changes), noisy (diurnal range changing 1-7 °C from day to day,
             random walk, 0.8 °C white noise);
  --csv      any real hourly series: columns ``timestamp`` (ISO-8601, UTC unless it has an
             offset) and ``temperature_c``; timestamps are rounded to the hour (readings at
             :50 become the next hour), duplicates averaged, gaps left as gaps.

"vs persistence" / "vs reference" = relative MSE reduction (1 - model / other); "worst" is the
largest model / persistence ratio over the seeds (below 1 = the model still wins).
Default run: about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from weather_assets.locations import Location
from weather_assets.stations.simulator import hourly_temperatures
from weather_assets.temperature.model import evaluate

PLACES = {
    "office": Location("office", "Office (Utrecht)", 52.084516, 5.115539),
    "helsinki": Location("helsinki", "Helsinki", 60.1699, 24.9384),
    "madrid": Location("madrid", "Madrid", 40.4168, -3.7038),
    "new_york": Location("new_york", "New York", 40.7128, -74.0060),
    "sydney": Location("sydney", "Sydney", -33.8688, 151.2093),
}
SEASONS = {"Jan": 1, "Apr": 4, "Jul": 7, "Oct": 10}
REGIMES = ("stormy", "ar", "noisy")
REGIME_DAYS = 40


def regime_series(kind: str, seed: int) -> pl.DataFrame:
    """An hourly series of a regime the simulator does not produce."""
    rng = np.random.default_rng([seed, 99])
    n = 24 * REGIME_DAYS
    hour = np.arange(n)
    if kind == "stormy":
        steps = np.where(rng.random(n) < 1 / 30, rng.normal(0.0, 4.0, n), 0.0)
        fronts = np.cumsum(np.convolve(steps, np.ones(3) / 3, mode="same"))
        drift = np.zeros(n)
        for i in range(1, n):
            drift[i] = 0.97 * drift[i - 1] + rng.normal(0.0, 0.35)
        values = 8 + 0.6 * np.sin(2 * np.pi * (hour - 9) / 24) + fronts + drift
        values += rng.normal(0.0, 0.3, n)
    elif kind == "ar":
        change = np.zeros(n)
        for i in range(2, n):
            change[i] = 0.5 * change[i - 1] - 0.1 * change[i - 2] + rng.normal(0.0, 0.6)
        values = 10 + 0.8 * np.cumsum(change) + rng.normal(0.0, 0.2, n)
    elif kind == "noisy":
        amplitude = np.repeat(rng.uniform(1.0, 7.0, REGIME_DAYS), 24)
        values = 15 + amplitude * np.sin(2 * np.pi * (hour - 9) / 24)
        values += np.cumsum(rng.normal(0.0, 0.3, n)) + rng.normal(0.0, 0.8, n)
    else:
        raise ValueError(f"unknown regime {kind!r}")
    start = datetime(2024, 3, 1, tzinfo=UTC)
    timestamps = pl.datetime_range(
        start, start + timedelta(hours=n - 1), "1h", time_zone="UTC", eager=True
    )
    return pl.DataFrame({"timestamp": timestamps, "temperature_c": values})


def read_hourly_csv(path: str) -> pl.DataFrame:
    raw = pl.read_csv(path, columns=["timestamp", "temperature_c"], infer_schema_length=None)
    stamps = raw["timestamp"].cast(pl.String).str.to_datetime(time_zone="UTC", time_unit="us")
    return (
        raw.with_columns(
            stamps.dt.round("1h").alias("timestamp"), pl.col("temperature_c").cast(pl.Float64)
        )
        .drop_nulls()
        .group_by("timestamp")
        .agg(pl.col("temperature_c").mean())
        .sort("timestamp")
    )


def run(job: tuple) -> tuple[tuple, dict[str, float]]:
    kind, *spec = job
    if kind == "sim":
        place, season, seed, days = spec
        start = datetime(2024, SEASONS[season], 1, tzinfo=UTC)
        data = hourly_temperatures(PLACES[place], start, start + timedelta(days=days), seed=seed)
    elif kind == "regime":
        data = regime_series(*spec)
    else:
        data = read_hourly_csv(spec[0])
    return job, evaluate(data)


def row(label: str, results: list[dict[str, float]]) -> str:
    mean = {
        k: float(np.mean([r[k] for r in results])) for k in ("model", "reference", "persistence")
    }
    hours = sum(int(r["n_hours"]) for r in results)
    worst = max(r["model"] / r["persistence"] for r in results)
    return (
        f"{label:<22}{mean['model']:>8.3f}{mean['reference']:>10.3f}{mean['persistence']:>12.3f}"
        f"{100 * (1 - mean['model'] / mean['persistence']):>11.1f}%"
        f"{100 * (1 - mean['model'] / mean['reference']):>11.1f}%{worst:>8.2f}{hours:>8}"
    )


HEADER = (
    f"{'':<22}{'model':>8}{'reference':>10}{'persistence':>12}{'vs pers.':>12}{'vs ref.':>12}"
    f"{'worst':>8}{'hours':>8}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--days", type=int, default=30, help="days per simulated season")
    parser.add_argument("--places", nargs="+", default=list(PLACES), choices=list(PLACES))
    parser.add_argument("--regime-seeds", type=int, default=4)
    parser.add_argument("--csv", nargs="*", default=[], help="real hourly series to add")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    jobs = [
        ("sim", place, season, seed, args.days)
        for place in args.places
        for season in SEASONS
        for seed in args.seeds
    ]
    jobs += [("regime", kind, seed) for kind in REGIMES for seed in range(args.regime_seeds)]
    jobs += [("csv", path) for path in args.csv]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = dict(pool.map(run, jobs))
    elapsed = time.perf_counter() - started

    print(
        f"Next-hour temperature, held-out MSE (°C²); train 120 h, test 24 h per origin; "
        f"{platform.python_version()} on {platform.machine()}"
    )
    print(f"\nSimulator: seeds {args.seeds}, {args.days} days from the 1st of each month (2024)")
    print(HEADER)
    for place in args.places:
        for season in SEASONS:
            seeds = [results[("sim", place, season, s, args.days)] for s in args.seeds]
            print(row(f"{place} {season}", seeds))
    print(HEADER)
    for place in args.places:
        print(row(f"{place} (all)", [r for j, r in results.items() if j[:2] == ("sim", place)]))
    print(row("simulator (all)", [r for j, r in results.items() if j[0] == "sim"]))

    print(f"\nOther regimes ({args.regime_seeds} seeds x {REGIME_DAYS} days, not the simulator)")
    print(HEADER)
    for kind in REGIMES:
        print(row(kind, [r for j, r in results.items() if j[:2] == ("regime", kind)]))

    if args.csv:
        print("\nReal hourly series")
        print(HEADER)
        for path in args.csv:
            print(row(path.rsplit("/", 1)[-1][:22], [results[("csv", path)]]))
    print(f"\n{len(jobs)} evaluations in {elapsed:.1f} s with {args.workers} workers")


if __name__ == "__main__":
    main()
