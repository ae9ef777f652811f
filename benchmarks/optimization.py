"""The ESIOS brief's optimization exercise at 1,000,000 rows: row loop vs vectorized, and memory.

    .venv/bin/python benchmarks/optimization.py [--rows 1000000] [--loop-rows 20000] [--repeat 3]

Generates a seeded frame shaped like ESIOS indicator data plus the brief's lat/lon (radians):
ids, indicator/geo ids and the hour stored as int64, region and geo names (repetitive strings),
an ISO date-time with a Europe/Madrid offset and a date as strings, lat/lon as full-precision
floats, demand (1 decimal) and price (2 decimals) as float64.

(a) the brief's ``df.iloc[i]`` loop is timed on the first --loop-rows rows and extrapolated
    linearly to --rows (running it on 1M rows would take minutes); numpy and polars are timed on
    all rows (best of --repeat). Target: speedup >= 100x. Results are asserted equal.
(b) ``reduce_memory_pandas`` / ``reduce_memory_polars`` on the full frame: bytes before/after.
    Target: >= 60% less. Values are asserted preserved (upcast back, float tol 2**-24 relative).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from polars.testing import assert_frame_equal

# The exercise lives beside this script, in benchmarks/ (not an installed package): import it
# from the repository root whether this runs as a script or from the tests.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
opt = importlib.import_module("benchmarks.optimization_exercise")
FLOAT32_RTOL = opt.FLOAT32_RTOL

REGIONS = np.array(
    [
        "Andalucía",
        "Aragón",
        "Asturias",
        "Baleares",
        "Canarias",
        "Cantabria",
        "Castilla-La Mancha",
        "Castilla y León",
        "Cataluña",
        "Comunidad Valenciana",
        "Extremadura",
        "Galicia",
        "La Rioja",
        "Madrid",
        "Murcia",
        "Navarra",
        "País Vasco",
    ]
)
GEOS = {8741: "Península", 8742: "Canarias", 8743: "Baleares", 8744: "Ceuta", 8745: "Melilla"}


def make_frame(rows: int, seed: int = 2024) -> pd.DataFrame:
    """ESIOS-like rows: 5 geos per 5-minute step, ISO strings with the Madrid offset."""
    rng = np.random.default_rng(seed)
    geo_ids = np.array(list(GEOS), dtype=np.int64)
    geo_names = np.array(list(GEOS.values()))
    step = np.arange(rows) // len(GEOS)
    steps = int(step[-1]) + 1 if rows else 0
    utc = pd.date_range("2023-01-01", periods=steps, freq="5min", tz="UTC")
    local = utc.tz_convert("Europe/Madrid").tz_localize(None)
    offset_h = ((local - utc.tz_localize(None)) // pd.Timedelta(hours=1)).to_numpy()
    stamps = np.char.add(
        np.datetime_as_string(local.to_numpy(), unit="ms"),
        np.where(offset_h == 2, "+02:00", "+01:00"),
    )
    days = np.datetime_as_string(local.to_numpy(), unit="D")
    geo = np.arange(rows) % len(GEOS)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "indicator_id": np.full(rows, 460, dtype=np.int64),
            "geo_id": geo_ids[geo],
            "geo_name": geo_names[geo],
            "region": REGIONS[rng.integers(0, len(REGIONS), rows)],
            "datetime": stamps[step],
            "date": days[step],
            "hour": local.hour.to_numpy().astype(np.int64)[step],
            "lat": rng.uniform(-np.pi / 2, np.pi / 2, rows),
            "lon": rng.uniform(-np.pi, np.pi, rows),
            "demand_mw": np.round(rng.uniform(18_000, 42_000, rows), 1),
            "price_eur_mwh": np.round(rng.uniform(0, 250, rows), 2),
        }
    )


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def check_pandas_preserved(original: pd.DataFrame, reduced: pd.DataFrame) -> None:
    for col in original.columns:
        before, after = original[col], reduced[col]
        if pd.api.types.is_datetime64_any_dtype(after):
            expected = pd.to_datetime(before, format="ISO8601", utc=after.dt.tz is not None)
            pd.testing.assert_series_equal(after, expected)
        elif pd.api.types.is_float_dtype(before):
            pd.testing.assert_series_equal(after.astype(before.dtype), before, rtol=FLOAT32_RTOL)
        else:
            pd.testing.assert_series_equal(after.astype(before.dtype), before)


def check_polars_preserved(original: pl.DataFrame, reduced: pl.DataFrame) -> None:
    back = reduced.with_columns(
        pl.col(pl.Int8, pl.Int16, pl.Int32).cast(pl.Int64),
        pl.col(pl.Float32).cast(pl.Float64),
        pl.col(pl.Enum).cast(pl.String),
        pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
    )
    expected = original.with_columns(
        pl.col("datetime").str.to_datetime(time_unit="us", time_zone="UTC")
    )
    assert_frame_equal(back, expected, rel_tol=FLOAT32_RTOL, abs_tol=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--loop-rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, "
        f"cores={len(os.sched_getaffinity(0))}, pandas {pd.__version__}, polars {pl.__version__}, "
        f"numpy {np.__version__}"
    )
    start = time.perf_counter()
    frame = make_frame(args.rows)
    print(
        f"generated {len(frame):,} rows x {frame.shape[1]} columns in "
        f"{time.perf_counter() - start:.1f} s (seed 2024)"
    )

    # (a) row loop vs vectorized -------------------------------------------------------------
    print("\n(a) function_to_apply(lat, lon)")
    coords = frame[["lat", "lon"]]  # the brief's frame: just lat, lon
    sample = coords.iloc[: args.loop_rows]
    loop_s, loop_result = best_of(1, lambda: opt.apply_row_loop(sample))
    loop_full_s = loop_s * len(coords) / len(sample)
    numpy_s, numpy_result = best_of(args.repeat, lambda: opt.apply_vectorized(coords))
    pl_coords = pl.from_pandas(coords)
    polars_s, polars_result = best_of(args.repeat, lambda: opt.apply_polars(pl_coords))

    assert np.allclose(
        numpy_result.to_numpy()[: len(sample)], loop_result.to_numpy(), rtol=1e-13, atol=1e-15
    )
    assert np.allclose(polars_result.to_numpy(), numpy_result.to_numpy(), rtol=1e-13, atol=1e-15)
    worst = np.max(np.abs(numpy_result.to_numpy()[: len(sample)] - loop_result.to_numpy()))
    print(
        f"row loop (df.iloc[i]):  {loop_s:.2f} s on {len(sample):,} rows = "
        f"{loop_s / len(sample) * 1e6:.1f} us/row -> extrapolated linearly to "
        f"{len(coords):,} rows: {loop_full_s:.1f} s (not run on all rows)"
    )
    print(
        f"numpy vectorized:       {numpy_s * 1000:.1f} ms on {len(coords):,} rows (best of "
        f"{args.repeat}) -> speedup {loop_full_s / numpy_s:,.0f}x (target >= 100x)"
    )
    print(
        f"polars expression:      {polars_s * 1000:.1f} ms on {len(coords):,} rows (best of "
        f"{args.repeat}) -> speedup {loop_full_s / polars_s:,.0f}x"
    )
    print(
        f"results equal: vectorized vs loop on the {len(sample):,} looped rows max |diff| "
        f"{worst:.1e} (allclose rtol 1e-13); polars vs numpy on all rows allclose"
    )

    # (b) memory ------------------------------------------------------------------------------
    print("\n(b) memory reduction")
    start = time.perf_counter()
    reduced, report = opt.reduce_memory_pandas(frame)
    pandas_s = time.perf_counter() - start
    check_pandas_preserved(frame, reduced)
    print(f"pandas ({pandas_s:.1f} s; memory_usage(deep=True) incl. index): {report}")

    pl_frame = pl.from_pandas(frame)
    start = time.perf_counter()
    pl_reduced, pl_report = opt.reduce_memory_polars(pl_frame)
    polars_reduce_s = time.perf_counter() - start
    check_polars_preserved(pl_frame, pl_reduced)
    print(f"polars ({polars_reduce_s:.1f} s; estimated_size()): {pl_report}")
    print(
        "values preserved: both frames equal the originals after upcasting back "
        f"(floats within relative {FLOAT32_RTOL:.2e}, dates compared as parsed instants)"
    )

    print("\nsummary")
    print(
        f"speedup numpy {loop_full_s / numpy_s:,.0f}x, polars {loop_full_s / polars_s:,.0f}x "
        "(target >= 100x)"
    )
    print(
        f"memory pandas -{report.reduction_pct:.1f}%, polars -{pl_report.reduction_pct:.1f}% "
        "(target >= 60%)"
    )


if __name__ == "__main__":
    main()
