"""Stock-volume model candidates on a synthetic market: MAE/MSE/R2, train seconds, model bytes.

    .venv/bin/python benchmarks/volume_model.py [--rows 5000000] [--reference-train-rows 100000]
        [--eval-rows 1000000] [--seed 0]

Builds ``--rows`` daily rows (the real Kaggle set has 24.7M rows over ~8,000 symbols, ~3,000 a
symbol) with heavy-tailed volumes, computes the two stage-2 features exactly as the pipeline
does (polars rolling mean / rolling median, window 30, min_samples 30, over Symbol) and trains
through ``market_assets.model.train_volume_model``; prints every candidate on both splits, the
one kept, and the process's peak RSS.

The market: symbols listed for log-uniform 60..12,000 trading days, all ending on the same
day (so later dates have more symbols, as in the real set); per symbol a log-normal base volume
(median ~200k shares, sd 1.5 in log, lower-priced stocks trading more shares), a slow random
walk of the log volume level (regimes), an AR(1) daily deviation (phi 0.6, sd 0.4) and news days
(1 %, +1.5 in log) -- so a day's volume ranges from tens to hundreds of millions; prices a
geometric random walk from a log-normal start.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from market_assets.features import add_rolling_features
from market_assets.model import train_volume_model
from market_assets.schema import (
    ADJ_CLOSE,
    DATE,
    SYMBOL,
    VOLUME,
)

LAST_DAY = datetime.date(2020, 4, 1)
MIN_DAYS, MAX_DAYS = 60, 12_000


def symbol_lengths(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Listing lengths (trading days) summing to ``rows``: log-uniform, the last one trimmed."""
    lengths: list[int] = []
    total = 0
    while total < rows:
        n = int(np.exp(rng.uniform(np.log(MIN_DAYS), np.log(MAX_DAYS))))
        n = min(n, rows - total) if rows - total >= MIN_DAYS else rows - total
        lengths.append(n)
        total += n
    return np.array(lengths, dtype=np.int64)


def synthetic_market(rows: int, seed: int = 0) -> pl.DataFrame:
    """Symbol, Date, Adj Close, Volume for ``rows`` rows, sorted by Symbol then Date."""
    rng = np.random.default_rng(seed)
    lengths = symbol_lengths(rows, rng)
    n_sym = len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sym_of_row = np.repeat(np.arange(n_sym), lengths)
    # day index within each listing; all listings end on LAST_DAY
    t = np.arange(rows) - np.repeat(starts, lengths)
    days_before_end = np.repeat(lengths, lengths) - 1 - t
    calendar = np.busday_offset(np.datetime64(LAST_DAY, "D"), -np.arange(MAX_DAYS), roll="backward")
    dates = calendar[days_before_end]

    log_p0 = rng.normal(3.0, 1.0, n_sym)
    mu = np.log(2e5) - 0.4 * (log_p0 - 3.0) + rng.normal(0.0, 1.5, n_sym)

    def per_symbol_cumsum(steps: np.ndarray) -> np.ndarray:
        total = np.cumsum(steps)
        return total - np.repeat(total[starts] - steps[starts], lengths)

    level = per_symbol_cumsum(rng.normal(0.0, 0.02, rows))
    # AR(1) over the concatenation; the state carried into a new symbol decays in a few days
    # and is zero-mean, so it does not bias anything.
    deviation = lfilter([1.0], [1.0, -0.6], rng.normal(0.0, 0.4, rows))
    news = np.where(rng.random(rows) < 0.01, rng.normal(1.5, 0.5, rows), 0.0)
    volume = np.exp(mu[sym_of_row] + level + deviation + news)
    volume = np.maximum(np.rint(volume), 0).astype(np.int64)

    log_price = log_p0[sym_of_row] + per_symbol_cumsum(rng.normal(0.0003, 0.02, rows))
    width = len(str(n_sym))
    return pl.DataFrame(
        {
            SYMBOL: pl.Series([f"S{i:0{width}d}" for i in range(n_sym)]).gather(sym_of_row),
            DATE: dates,
            ADJ_CLOSE: np.exp(log_price),
            VOLUME: volume,
        }
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--reference-train-rows", type=int, default=100_000)
    parser.add_argument("--eval-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not echo the training log")
    args = parser.parse_args()

    started = time.perf_counter()
    features = add_rolling_features(synthetic_market(args.rows, args.seed))
    built = time.perf_counter() - started
    n_sym = features[SYMBOL].n_unique()
    vol = features[VOLUME].to_numpy()
    print(
        f"Synthetic market: {features.height:,} rows, {n_sym:,} symbols, "
        f"{features[DATE].min()}..{features[DATE].max()}, built in {built:.1f} s; "
        f"Python {platform.python_version()} on {platform.machine()}"
    )
    q = np.percentile(vol, [1, 50, 99, 99.99])
    print(
        f"Volume: p1 {q[0]:,.0f}  median {q[1]:,.0f}  p99 {q[2]:,.0f}  p99.99 {q[3]:,.0f}  "
        f"max {vol.max():,}"
    )

    started = time.perf_counter()
    report = train_volume_model(
        features,
        reference_train_rows=args.reference_train_rows,
        eval_rows=args.eval_rows,
        log=None if args.quiet else lambda line: print(f"  | {line}", flush=True),
    )
    trained = time.perf_counter() - started
    del features

    print(
        f"\n{'split':<7}{'candidate':<20}{'MAE':>12}{'MSE':>11}{'R2':>8}{'train s':>9}"
        f"{'bytes':>14}{'train rows':>12}{'test rows':>11}  note"
    )
    for s in sorted(report.scores, key=lambda s: (s.split != "time", s.mae)):
        print(
            f"{s.split:<7}{s.name:<20}{s.mae:>12,.0f}{s.mse:>11.3e}{s.r2:>8.4f}"
            f"{s.train_seconds:>9.1f}{s.model_bytes:>14,}{s.train_rows:>12,}{s.test_rows:>11,}"
            f"  {s.note}"
        )
    ref = "reference_forest"
    print(
        f"\nKept {report.best} (refit on all {report.rows:,} rows; {report.dropped_rows:,} "
        f"dropped for null features), {report.model_bytes:,} bytes pickled; time cutoff "
        f"{report.time_cutoff}"
    )
    for split in ("time", "random"):
        kept, base = report.score(report.best, split), report.score(ref, split)
        print(
            f"  {split:<6} MAE {kept.mae:,.0f} vs reference {base.mae:,.0f} "
            f"({100 * (kept.mae / base.mae - 1):+.1f} %)"
        )
    print(f"Whole training {trained:.1f} s; peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
