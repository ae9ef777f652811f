"""30-day rolling features per symbol, the same numbers in polars and in PySpark.

The window is the current trading day and the 29 trading days before it, per symbol, ordered
by date (rows, not calendar days: a series has no rows on weekends and holidays, and the brief
asks for "30 days" of trading data):

- ``vol_moving_avg``: the mean of ``Volume`` over the window;
- ``adj_close_rolling_med``: the exact median of ``Adj Close`` over the window (the mean of the
  15th and 16th values), not Spark's ``percentile_approx``.

The first 29 rows of every series have no full window and get nulls in both columns, like
pandas' ``rolling(30)``; a model drops them (``dropna``) rather than learn from partial windows.
The sums are of whole volumes, exact in float64 below 2**53, so both engines give the same
mean to the bit; medians agree to rounding (``(a + b) / 2`` against ``a + (b - a) / 2``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from market_assets.schema import (
    ADJ_CLOSE,
    ADJ_CLOSE_ROLLING_MED,
    DATE,
    SYMBOL,
    VOL_MOVING_AVG,
    VOLUME,
    WINDOW_DAYS,
)


def add_rolling_features(prices: Any) -> Any:
    """``prices`` plus ``vol_moving_avg`` and ``adj_close_rolling_med``; a polars DataFrame or
    LazyFrame gives the same type back, and so does a Spark DataFrame."""
    if isinstance(prices, pl.DataFrame | pl.LazyFrame):
        return _rolling_features_polars(prices)
    return _rolling_features_spark(prices)


def _rolling_features_polars(prices: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    return prices.sort(SYMBOL, DATE).with_columns(
        pl.col(VOLUME)
        .cast(pl.Float64)
        .rolling_mean(WINDOW_DAYS, min_samples=WINDOW_DAYS)
        .over(SYMBOL)
        .alias(VOL_MOVING_AVG),
        pl.col(ADJ_CLOSE)
        .rolling_median(WINDOW_DAYS, min_samples=WINDOW_DAYS)
        .over(SYMBOL)
        .alias(ADJ_CLOSE_ROLLING_MED),
    )


def _rolling_features_spark(prices):
    # Imported here so the polars path (and the web service) never loads PySpark.
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy(SYMBOL).orderBy(DATE).rowsBetween(-(WINDOW_DAYS - 1), 0)
    full = F.count(F.lit(1)).over(window) == WINDOW_DAYS
    return prices.select(
        "*",
        F.when(full, F.avg(F.col(VOLUME).cast("double")).over(window)).alias(VOL_MOVING_AVG),
        # F.median is refused over a sliding frame; percentile(…, 0.5) is exact and allowed.
        F.when(full, F.percentile(F.col(ADJ_CLOSE), F.lit(0.5)).over(window)).alias(
            ADJ_CLOSE_ROLLING_MED
        ),
    )
