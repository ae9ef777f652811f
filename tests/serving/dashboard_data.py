"""A populated platform for the dashboard tests: real rain materializations, temperature
tables in the assets' own column types, and a published volume model."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor

from market_assets.model_store import publish_model
from resources.object_store import object_store_from
from resources.settings import load_settings
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS

TEMPERATURE_HOURS = 48
# Every page and JSON route, with good input (200) and bad (422 and nothing else).
GOOD_REQUESTS = [
    "/",
    "/rain",
    "/temperature",
    "/temperature.json",
    "/volume",
    "/volume?vol_moving_avg=25000&adj_close_rolling_med=31.5",
    "/predict?vol_moving_avg=25000&adj_close_rolling_med=31.5",
    "/health",
]
BAD_REQUESTS = [
    "/volume?vol_moving_avg=-1&adj_close_rolling_med=abc",
    "/predict?vol_moving_avg=-1&adj_close_rolling_med=31.5",
    "/predict?vol_moving_avg=nan&adj_close_rolling_med=31.5",
]


def minute_key(minutes_ago: int = 1) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime(MINUTE_FORMAT)


def materialize_rain(instance: dg.DagsterInstance, minutes_ago: int = 1) -> None:
    """One real minute of the rain stream (simulated source) into the warehouse."""
    from definitions import build_resources

    result = dg.materialize(
        RAIN_ASSETS,
        partition_key=minute_key(minutes_ago),
        resources=build_resources(load_settings()),
        instance=instance,
    )
    assert result.success


def temperature_frames(hours: int = TEMPERATURE_HOURS) -> dict[str, pl.DataFrame]:
    """Actuals, predictions (one more hour than actuals: the open forecast) and accuracy."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    stamps = [end - timedelta(hours=hours - 1 - i) for i in range(hours)]
    actual = [8 + 4 * math.sin(2 * math.pi * t.hour / 24) for t in stamps]
    predicted = [a + 0.5 * math.cos(i) for i, a in enumerate(actual)]
    utc = pl.Datetime("us", "UTC")
    actuals = pl.DataFrame(
        {"timestamp": stamps, "temperature_c": actual, "readings": [60] * hours},
        schema={"timestamp": utc, "temperature_c": pl.Float64, "readings": pl.Int64},
    )
    targets = [*stamps[1:], end + timedelta(hours=1)]
    predictions = pl.DataFrame(
        {
            "made_at": stamps,
            "target_hour": targets,
            "predicted_c": [*predicted[1:], 9.25],
            "model_version": ["2026-11-21"] * hours,
        },
        schema={"made_at": utc, "target_hour": utc, "predicted_c": pl.Float64,
                "model_version": pl.String},
    )  # fmt: skip
    errors = [(p - a) ** 2 for p, a in zip(predicted[1:], actual[1:], strict=True)]
    running = np.cumsum(errors)
    accuracy = pl.DataFrame(
        {
            "target_hour": stamps[1:],
            "predicted_c": predicted[1:],
            "actual_c": actual[1:],
            "squared_error": errors,
            "mse_24h": [float(np.mean(errors[max(0, i - 23) : i + 1])) for i in range(len(errors))],
            "hours_24h": [min(24, i + 1) for i in range(len(errors))],
            "mse_7d": [float(running[i] / (i + 1)) for i in range(len(errors))],
            "hours_7d": [i + 1 for i in range(len(errors))],
            "model_version": ["2026-11-21"] * len(errors),
        },
        schema_overrides={"target_hour": utc},
    )
    return {
        "temperature_actuals": actuals,
        "temperature_predictions": predictions,
        "temperature_accuracy": accuracy,
    }


def write_temperature_tables(frames: dict[str, pl.DataFrame] | None = None) -> None:
    frames = frames or temperature_frames()
    path = load_settings().warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema if not exists weather")
        for name, frame in frames.items():
            conn.register("frame", frame.to_arrow())
            conn.execute(f"create or replace table weather.{name} as select * from frame")
            conn.unregister("frame")


def publish_volume_model() -> str:
    """A small HistGradientBoosting volume model, published like volume_model does."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(10, 1, 400), rng.lognormal(3, 1, 400)])
    y = X[:, 0] * (1 + 0.2 * np.log(X[:, 1]))
    model = HistGradientBoostingRegressor(max_iter=20).fit(X, y)
    store = object_store_from(load_settings())
    published = publish_model(
        store, model, metrics={"kept": "hist_gbm"}, log_text="dashboard test model\n"
    )
    return published.version


def populate(instance: dg.DagsterInstance) -> None:
    """Everything the three pages show."""
    materialize_rain(instance)
    write_temperature_tables()
    publish_volume_model()
