"""The 30-day rolling features: a hand-checked example, and polars == Spark."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from market_assets.features import add_rolling_features
from market_assets.schema import ADJ_CLOSE, DATE, SYMBOL, VOLUME


def _one_symbol_prices(symbol: str, volumes: list[int], adj: list[float]) -> pl.DataFrame:
    start = dt.date(2020, 1, 1)
    return pl.DataFrame(
        {
            SYMBOL: [symbol] * len(volumes),
            DATE: [start + dt.timedelta(days=i) for i in range(len(volumes))],
            ADJ_CLOSE: adj,
            VOLUME: volumes,
        },
        schema={SYMBOL: pl.String, DATE: pl.Date, ADJ_CLOSE: pl.Float64, VOLUME: pl.Int64},
    )


def test_hand_checked_window():
    # Volumes 1..31, Adj Close 31 values with an outlier: windows are rows 0-29 and 1-30.
    volumes = list(range(1, 32))
    adj = [float(v) for v in range(1, 31)] + [1000.0]
    out = add_rolling_features(_one_symbol_prices("X", volumes, adj))
    assert out["vol_moving_avg"][:29].is_null().all()
    assert out["adj_close_rolling_med"][:29].is_null().all()
    assert out["vol_moving_avg"][29] == pytest.approx(15.5)  # mean of 1..30
    assert out["adj_close_rolling_med"][29] == pytest.approx(15.5)  # (15 + 16) / 2
    assert out["vol_moving_avg"][30] == pytest.approx(16.5)  # mean of 2..31
    assert out["adj_close_rolling_med"][30] == pytest.approx(16.5)  # median ignores the 1000


def test_series_do_not_leak_into_each_other_and_input_order_does_not_matter():
    a = _one_symbol_prices("A", [10] * 30, [1.0] * 30)
    b = _one_symbol_prices("B", [1_000_000] * 30, [500.0] * 30)
    out = add_rolling_features(pl.concat([b, a]).sample(fraction=1.0, shuffle=True, seed=1))
    last = out.filter(pl.col(DATE) == dt.date(2020, 1, 30)).sort(SYMBOL)
    assert last["vol_moving_avg"].to_list() == [10.0, 1_000_000.0]
    assert last["adj_close_rolling_med"].to_list() == [1.0, 500.0]


def _random_prices(symbols: int = 6, days: int = 120, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(symbols):
        n = int(rng.integers(10, days))  # some series shorter than a window
        volumes = rng.lognormal(10 + s, 1.5, n).astype(np.int64).tolist()
        adj = np.exp(np.cumsum(rng.normal(0, 0.03, n)) + s).tolist()
        frames.append(_one_symbol_prices(f"S{s}", volumes, adj))
    return pl.concat(frames)


def test_polars_and_spark_give_the_same_numbers(spark):
    prices = _random_prices()
    by_polars = add_rolling_features(prices).sort(SYMBOL, DATE)
    spark_prices = spark.createDataFrame(
        prices.rows(), "Symbol STRING, Date DATE, `Adj Close` DOUBLE, Volume BIGINT"
    )
    rows = [r.asDict() for r in add_rolling_features(spark_prices).collect()]
    by_spark = pl.DataFrame(rows, schema=by_polars.schema).sort(SYMBOL, DATE)
    assert by_spark.height == by_polars.height
    for column in ("vol_moving_avg", "adj_close_rolling_med"):
        left, right = by_polars[column], by_spark[column]
        assert (left.is_null() == right.is_null()).all(), column
        np.testing.assert_allclose(
            left.drop_nulls().to_numpy(), right.drop_nulls().to_numpy(), rtol=1e-12
        )
    # Whole volumes: the means are equal to the bit, not only close.
    assert by_polars["vol_moving_avg"].drop_nulls().equals(by_spark["vol_moving_avg"].drop_nulls())
