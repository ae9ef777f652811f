from datetime import datetime

import polars as pl
import pytest

from weather_assets.temperature.assets import rolling_accuracy

T = datetime(2026, 11, 22, 12)


def frames(hours: int):
    stamps = pl.datetime_range(
        datetime(2026, 11, 1), T, interval="1h", eager=True, time_unit="us"
    ).tail(hours)
    predictions = pl.DataFrame(
        {"target_hour": stamps, "predicted_c": [10.0] * hours, "model_version": ["v"] * hours}
    )
    actuals = pl.DataFrame(
        {"timestamp": stamps, "temperature_c": [10.0 + (i % 3) for i in range(hours)]}
    )
    return predictions, actuals


def test_rolling_windows_are_24_hours_and_7_days_up_to_the_target():
    predictions, actuals = frames(200)
    scores = rolling_accuracy(predictions, actuals, T)
    errors = [(i % 3) ** 2 for i in range(200)]
    assert scores["hours_24h"] == 24 and scores["hours_7d"] == 168
    assert scores["mse_24h"] == pytest.approx(sum(errors[-24:]) / 24)
    assert scores["mse_7d"] == pytest.approx(sum(errors[-168:]) / 168)
    assert scores["predicted_c"] == 10.0 and scores["actual_c"] == 10.0 + (199 % 3)


def test_later_hours_do_not_leak_into_an_earlier_score():
    predictions, actuals = frames(30)
    earlier = datetime(2026, 11, 22, 6)
    scores = rolling_accuracy(predictions, actuals, earlier)
    assert scores["hours_24h"] == 24
    later = rolling_accuracy(predictions, actuals, T)
    assert scores["mse_24h"] != later["mse_24h"] or scores["hours_7d"] != later["hours_7d"]


def test_no_pair_gives_no_scores():
    predictions, actuals = frames(5)
    scores = rolling_accuracy(predictions.head(0), actuals, T)
    assert scores["predicted_c"] is None and scores["mse_24h"] is None
