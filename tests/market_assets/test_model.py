"""The volume model's pure training logic, on a small synthetic market built here."""

from __future__ import annotations

import datetime
import pickle

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from market_assets.model import (
    BASELINE,
    MAX_MODEL_BYTES,
    REFERENCE,
    MovingAverageRatioRegressor,
    candidates,
    pickled_bytes,
    predict_volume,
    random_split,
    time_split,
    train_volume_model,
    training_arrays,
)
from market_assets.schema import (
    ADJ_CLOSE_ROLLING_MED,
    DATE,
    FEATURES,
    SYMBOL,
    TARGET,
    VOL_MOVING_AVG,
    WINDOW_DAYS,
)

SYMBOLS = 4
DAYS = 150


def market(symbols: int = SYMBOLS, days: int = DAYS, seed: int = 0) -> pl.DataFrame:
    """Shuffled rows of a few symbols: AR(1) log volume around a per-symbol level + features."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2020-01-01", "D")
    frames = []
    for i in range(symbols):
        dates = np.busday_offset(start, np.arange(days), roll="forward")
        noise = np.zeros(days)
        for t in range(1, days):
            noise[t] = 0.6 * noise[t - 1] + rng.normal(0.0, 0.4)
        volume = np.rint(np.exp(rng.normal(11.0, 1.5) + noise)).astype(np.int64)
        price = np.exp(rng.normal(3.0, 1.0) + np.cumsum(rng.normal(0.0, 0.02, days)))
        frames.append(
            pl.DataFrame({SYMBOL: f"S{i}", DATE: dates, "Adj Close": price, TARGET: volume})
        )
    window = {"window_size": WINDOW_DAYS, "min_samples": WINDOW_DAYS}
    return (
        pl.concat(frames)
        .with_columns(
            pl.col(TARGET)
            .cast(pl.Float64)
            .rolling_mean(**window)
            .over(SYMBOL)
            .alias(VOL_MOVING_AVG),
            pl.col("Adj Close").rolling_median(**window).over(SYMBOL).alias(ADJ_CLOSE_ROLLING_MED),
        )
        .sample(fraction=1.0, shuffle=True, seed=seed)
    )


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait: on a few hundred rows and a busy
    machine they take ~10x longer than one thread. The logic under test is the same."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return market()


@pytest.fixture(scope="module")
def report(frame):
    return train_volume_model(frame, reference_train_rows=200, eval_rows=80)


def test_training_arrays_drops_exactly_the_null_feature_rows(frame):
    x, y, dates = training_arrays(frame)
    usable = SYMBOLS * (DAYS - (WINDOW_DAYS - 1))
    assert x.shape == (usable, 2) and x.dtype == np.float64 and x.flags.c_contiguous
    assert y.shape == (usable,) and y.dtype == np.float64
    assert dates.dtype == np.dtype("datetime64[D]") and len(dates) == usable
    assert np.isfinite(x).all()
    expected = frame.drop_nulls(list(FEATURES)).sort(SYMBOL, DATE)
    np.testing.assert_array_equal(x, expected.select(FEATURES).to_numpy())
    np.testing.assert_array_equal(y, expected[TARGET].to_numpy().astype(np.float64))
    np.testing.assert_array_equal(dates, expected[DATE].to_numpy())


def test_training_arrays_ignore_the_input_row_order(frame):
    a = training_arrays(frame)
    b = training_arrays(frame.sample(fraction=1.0, shuffle=True, seed=7))
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)


def test_random_split_is_train_test_split_of_the_rows():
    train, test = random_split(1_003)
    want_train, want_test = train_test_split(np.arange(1_003), test_size=0.2, random_state=42)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)


def test_time_split_has_no_look_ahead(frame):
    _, _, dates = training_arrays(frame)
    train, test, cutoff = time_split(dates)
    assert dates[train].max() < dates[test].min()
    assert dates[test].min() == np.datetime64(cutoff, "D")
    assert isinstance(cutoff, datetime.date)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(dates)))
    assert 0.18 <= len(test) / len(dates) <= 0.22


def test_time_split_of_one_day_is_refused():
    with pytest.raises(ValueError, match="no rows before"):
        time_split(np.full(10, np.datetime64("2020-01-01", "D")))


def test_every_candidate_is_scored_on_both_splits(report):
    names = set(candidates())
    assert {REFERENCE, "hist_gbm_absolute"} <= names
    assert {(s.name, s.split) for s in report.scores} == {
        (n, split) for n in names for split in ("random", "time")
    }
    for s in report.scores:
        assert s.mae > 0 and s.mse > 0 and s.train_seconds >= 0 and s.model_bytes > 0
        assert s.test_rows == 80  # eval_rows caps both test splits ...
        assert "80-row sample" in s.note
    # ... and the forest alone trains on a sample of its split
    forest, boosted = report.score(REFERENCE, "time"), report.score("hist_gbm_absolute", "time")
    assert forest.train_rows == 200 < boosted.train_rows
    assert f"200-row sample of {boosted.train_rows:,}" in forest.note


def test_the_best_has_the_lowest_time_split_mae_and_is_refit(report, frame):
    time_scores = {s.name: s for s in report.scores if s.split == "time"}
    assert all(s.model_bytes <= MAX_MODEL_BYTES for s in time_scores.values())
    # The moving average is a yardstick: scored, reported, never kept.
    learnt = {n: s for n, s in time_scores.items() if n != BASELINE}
    assert report.best != BASELINE
    assert time_scores[report.best].mae == min(s.mae for s in learnt.values())
    assert "moving-average yardstick" in report.reason
    assert report.rows == SYMBOLS * (DAYS - (WINDOW_DAYS - 1))
    assert report.dropped_rows == frame.height - report.rows
    assert report.model_bytes == len(pickle.dumps(report.estimator, protocol=5)) > 0
    prediction = report.estimator.predict(np.array([[1e5, 20.0], [3e6, 150.0]]))
    assert prediction.shape == (2,) and np.isfinite(prediction).all()


def test_report_metadata_and_log(report):
    meta = report.metadata()
    assert meta["best"] == report.best
    assert meta["time_cutoff"] == report.time_cutoff.isoformat()
    assert meta["time/hist_gbm_absolute/mae"] == report.score("hist_gbm_absolute", "time").mae
    assert all(isinstance(v, int | float | str) for v in meta.values())
    text = report.log_text()
    assert f"Kept {report.best}" in text and "sample" in text and "random_state=42" in text
    assert all(name in text for name in candidates())


def test_training_is_deterministic(frame, report):
    again = train_volume_model(
        frame.sample(fraction=1.0, shuffle=True, seed=3), reference_train_rows=200, eval_rows=80
    )
    strip = [(s.name, s.split, s.mae, s.mse, s.r2, s.model_bytes) for s in report.scores]
    assert strip == [(s.name, s.split, s.mae, s.mse, s.r2, s.model_bytes) for s in again.scores]
    assert again.best == report.best and again.time_cutoff == report.time_cutoff
    x, _, _ = training_arrays(frame)
    np.testing.assert_array_equal(report.estimator.predict(x), again.estimator.predict(x))


def test_ratio_model_scales_a_ratio_by_the_moving_average():
    x = np.array([[100.0, 5.0], [10_000.0, 5.0], [0.0, 5.0]] * 20)
    model = MovingAverageRatioRegressor(
        HistGradientBoostingRegressor(learning_rate=1.0, max_iter=5, min_samples_leaf=1)
    ).fit(x, 0.5 * x[:, 0])
    # the trees see a ratio of 0.5 (0 where the average is 0: floored at one share, no nan)
    np.testing.assert_allclose(model.predict(x[:2]), [50.0, 5_000.0], rtol=0.02)
    assert 0.0 <= model.predict(x[2:3])[0] < 1.0


def test_predict_volume_is_a_non_negative_int(report):
    value = predict_volume(report.estimator, 250_000.0, 30.0)
    assert isinstance(value, int) and value >= 0

    class Negative:
        def predict(self, x):
            return np.array([-12.6])

    assert predict_volume(Negative(), 1.0, 1.0) == 0
    with pytest.raises(ValueError, match="finite"):
        predict_volume(report.estimator, float("nan"), 30.0)


def test_pickled_bytes_is_the_length_of_pickle_dumps():
    obj = {"a": np.arange(10_000), "b": "x" * 70_000}
    assert pickled_bytes(obj) == len(pickle.dumps(obj, protocol=5))


def test_too_few_usable_rows_says_why():
    short = market(symbols=3, days=WINDOW_DAYS + 10)  # 3 x 11 usable rows
    with pytest.raises(ValueError, match=r"only 33 of 120 rows .* first 29 trading days"):
        train_volume_model(short)
    with pytest.raises(ValueError, match="only 0 of 0 rows"):
        train_volume_model(short.clear())
