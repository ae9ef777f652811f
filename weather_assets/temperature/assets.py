"""Dagster wiring of the office temperature forecast: model, predictions, actuals, accuracy.

scikit-learn (via ``weather_assets.temperature.model``) is imported inside the assets: it costs about
1.5 s, and the code location must load fast.

Hourly partition ``P`` (``%Y-%m-%d-%H:%M``, UTC) is the *last observed hour*: its run stores the
actual mean of hour P, predicts hour P + 1 from hours P-23..P, and scores the prediction that
the previous run made for hour P. One run per hour, at minute 2, once hour P is complete.
"""

import functools
from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from resources import clock
from resources.asset_metadata import column_schema, warehouse_table
from resources.object_store import ObjectStore
from resources.warehouse import DUCKDB_POOL
from weather_assets.automation import (
    daily_retrain,
    hourly_accuracy,
    hourly_actuals,
    hourly_prediction,
)
from weather_assets.locations import CoordinateRegistry
from weather_assets.observations import etl_polars
from weather_assets.observations.assets import dataset_uri, weather_observations_hourly
from weather_assets.partitions import HOURLY, window_starts
from weather_assets.stations.feed import StationFeed
from weather_assets.stations.poll_store import read_polls

OFFICE = "office"
HOUR = timedelta(hours=1)


# The hourly tables: one partition per observed hour, written in the duckdb pool; a range of
# hours (the bootstrap, a backfill) is one run.
hourly_table = functools.partial(
    dg.asset,
    group_name="weather",
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)


class TemperatureModelConfig(dg.Config):
    train_days: int = 5
    """Days of hourly history the model is fitted on (the free API's history is ~5 days)."""


@dg.asset(
    group_name="weather",
    kinds={"python", "scikitlearn", "polars"},
    deps=[weather_observations_hourly],
    io_manager_key="object_io_manager",
    automation_condition=daily_retrain(),
    metadata={
        **column_schema(
            ("timestamp", "TIMESTAMP", "Hour start (UTC) of each training row."),
            ("temperature_c", "DOUBLE", "Office hourly mean temperature, °C."),
        )
    },
)
def temperature_model(
    context: dg.AssetExecutionContext,
    config: TemperatureModelConfig,
    object_store: ObjectStore,
):
    """Next-hour temperature model for the office, retrained daily on the last N days.

    Before refitting, the same recipe is scored on the most recent day after training on the
    N days before it, against the brief's reference pipeline and persistence (metadata).
    """
    from weather_assets.temperature.model import evaluate, train_temperature_model

    hourly = _office_hourly(object_store)
    if hourly.is_empty():
        raise dg.Failure("no hourly observations yet: materialize weather_observations_hourly")
    last = hourly["timestamp"].max()
    window = hourly.filter(pl.col("timestamp") > last - timedelta(days=config.train_days))
    scored = hourly.filter(pl.col("timestamp") > last - timedelta(days=config.train_days + 1))
    metadata: dict[str, object] = {}
    try:
        scores = evaluate(scored, train_hours=config.train_days * 24, test_hours=24, step_hours=24)
        metadata |= {
            "holdout_mse_model": dg.MetadataValue.float(scores["model"]),
            "holdout_mse_reference": dg.MetadataValue.float(scores["reference"]),
            "holdout_mse_persistence": dg.MetadataValue.float(scores["persistence"]),
            "holdout_hours": int(scores["n_hours"]),
        }
    except ValueError as exc:
        context.log.warning(f"no held-out score ({exc}); need {config.train_days + 1} days")
    model = train_temperature_model(window)
    context.add_output_metadata(
        {
            **metadata,
            "model_version": model.version,
            "dagster/row_count": window.height,
            "trained_from": str(model.trained_on["first"]),
            "trained_to": str(model.trained_on["last"]),
            "train_mse": dg.MetadataValue.float(model.train_mse),
        }
    )
    return model


def _office_hourly(store: ObjectStore) -> pl.DataFrame:
    """The office's hourly means from the Spark ETL's parquet (``timestamp``, ``temperature_c``)."""
    path = dataset_uri(store, "observations_hourly")
    try:
        frame = pl.read_parquet(f"{path}/**/*.parquet", hive_partitioning=True)
    except (FileNotFoundError, pl.exceptions.ComputeError):
        return pl.DataFrame(
            schema={"timestamp": pl.Datetime("us", "UTC"), "temperature_c": pl.Float64}
        )
    return (
        frame.filter(pl.col("station_id") == OFFICE)
        .select(
            pl.col("bucket_start").dt.convert_time_zone("UTC").alias("timestamp"),
            pl.col("temperature_mean").alias("temperature_c"),
        )
        .sort("timestamp")
    )


@hourly_table(
    kinds={"python", "polars", "duckdb"},
    automation_condition=hourly_actuals(),
    metadata=warehouse_table(
        "weather",
        ("timestamp", "TIMESTAMP", "Hour start (UTC)."),
        ("temperature_c", "DOUBLE", "Mean of the hour's clean readings, °C."),
        ("readings", "BIGINT", "Clean readings averaged."),
        partition_expr="timestamp",
    ),
)
def temperature_actuals(
    context: dg.AssetExecutionContext,
    station_feed: StationFeed,
    coordinates: CoordinateRegistry,
    object_store: ObjectStore,
) -> pl.DataFrame:
    """The office's observed hourly mean temperature, once the hour is complete.

    The hour's raw readings go through the same cleaning rules as the Spark ETL
    (``etl_polars``), so this equals the office row of weather_observations_hourly.
    """
    office = [loc for loc in coordinates.load() if loc.location_id == OFFICE]
    window = context.partition_time_window
    if window.end > clock.utcnow():
        raise dg.Failure(f"hour {window.start:%Y-%m-%d %H:%M} UTC is not complete yet")
    live = station_feed.source.live
    polls = read_polls(object_store, window.start, window.end) if live else None
    raw = station_feed.readings(office, window.start, window.end, polls=polls)
    clean, counts = etl_polars.clean_observations(raw)
    hourly = etl_polars.aggregate(clean, 60)
    actuals = hourly.select(
        pl.col("bucket_start").dt.replace_time_zone(None).alias("timestamp"),
        pl.col("temperature_mean").alias("temperature_c"),
        pl.col("temperature_count").cast(pl.Int64).alias("readings"),
    )
    missing = (window.end - window.start) // HOUR - actuals.height
    if missing:
        context.log.warning(f"{missing} hours in the window have no clean reading")
    context.add_output_metadata(
        {
            "source": station_feed.source.mode,
            "rejected_rows": sum(
                v for k, v in counts.items() if k not in ("sentinel_values", "out_of_bounds_values")
            ),
            "latest_c": dg.MetadataValue.float(float(actuals["temperature_c"][-1]))
            if actuals.height
            else dg.MetadataValue.text("none"),
        }
    )
    return actuals


@hourly_table(
    kinds={"python", "scikitlearn", "duckdb"},
    automation_condition=hourly_prediction(),
    ins={
        "temperature_actuals": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-23, end_offset=0, allow_nonexistent_upstream_partitions=True
            )
        ),
        "temperature_model": dg.AssetIn(input_manager_key="object_io_manager"),
    },
    # The partition is the last observed hour; the row's target is the hour after it.
    metadata=warehouse_table(
        "weather",
        (
            "made_at",
            "TIMESTAMP",
            "When the forecast was issued: the end of the last observed hour (UTC).",
        ),
        ("target_hour", "TIMESTAMP", "Start of the forecast hour (UTC)."),
        ("predicted_c", "DOUBLE", "Predicted mean temperature of the target hour, °C."),
        ("model_version", "VARCHAR", "temperature_model version used."),
        partition_expr="target_hour - INTERVAL 1 HOUR",
    ),
)
def temperature_predictions(
    context: dg.AssetExecutionContext,
    temperature_actuals: pl.DataFrame,
    temperature_model,
) -> pl.DataFrame:
    """Next-hour temperature prediction for the office, one row per hour, from the last 24
    observed hours and the current daily model."""
    from weather_assets.temperature.model import predict_next_hour

    window = context.partition_time_window
    history = temperature_actuals.select(
        pl.col("timestamp").dt.replace_time_zone("UTC"), "temperature_c"
    ).sort("timestamp")
    rows = []
    for observed in window_starts(window, HOUR):
        try:
            predicted = predict_next_hour(
                temperature_model, history.filter(pl.col("timestamp") <= observed)
            )
        except ValueError as exc:
            raise dg.Failure(
                f"cannot predict from the 24 hours up to {observed:%Y-%m-%d %H:%M} UTC: {exc}. "
                "Materialize temperature_actuals for those hours first."
            ) from None
        target = clock.naive_utc(observed) + HOUR
        rows.append((target, target, predicted, temperature_model.version))
    context.add_output_metadata(
        {
            "predicted_c": dg.MetadataValue.float(rows[-1][2]),
            "target_hour": str(rows[-1][1]),
            "model_version": temperature_model.version,
        }
    )
    return pl.DataFrame(
        rows,
        schema={
            "made_at": pl.Datetime("us"),
            "target_hour": pl.Datetime("us"),
            "predicted_c": pl.Float64,
            "model_version": pl.String,
        },
        orient="row",
    )


ACCURACY_SCHEMA = {
    "target_hour": pl.Datetime("us"),
    "predicted_c": pl.Float64,
    "actual_c": pl.Float64,
    "squared_error": pl.Float64,
    "mse_24h": pl.Float64,
    "hours_24h": pl.Int64,
    "mse_7d": pl.Float64,
    "hours_7d": pl.Int64,
    "model_version": pl.String,
}


class AccuracyConfig(dg.Config):
    mse_warn_threshold: float = 1.0
    """The accuracy check warns when the rolling 24 h MSE (°C²) exceeds this."""


def rolling_accuracy(
    predictions: pl.DataFrame, actuals: pl.DataFrame, target: datetime
) -> dict[str, float | int | None]:
    """Error of the prediction for ``target`` and the 24 h / 7 d MSE (sklearn) up to it."""
    from sklearn.metrics import mean_squared_error  # sklearn costs ~1.5 s at definitions load

    pairs = predictions.join(
        actuals.rename({"timestamp": "target_hour", "temperature_c": "actual_c"}),
        on="target_hour",
        how="inner",
    ).filter(pl.col("target_hour") <= target)

    def mse(hours: int) -> tuple[float | None, int]:
        recent = pairs.filter(pl.col("target_hour") > target - timedelta(hours=hours))
        if recent.is_empty():
            return None, 0
        return float(mean_squared_error(recent["actual_c"], recent["predicted_c"])), recent.height

    this = pairs.filter(pl.col("target_hour") == target)
    mse_24h, n_24h = mse(24)
    mse_7d, n_7d = mse(24 * 7)
    return {
        "predicted_c": this["predicted_c"][0] if this.height else None,
        "actual_c": this["actual_c"][0] if this.height else None,
        "model_version": this["model_version"][0] if this.height else None,
        "mse_24h": mse_24h,
        "hours_24h": n_24h,
        "mse_7d": mse_7d,
        "hours_7d": n_7d,
    }


@hourly_table(
    kinds={"python", "scikitlearn", "duckdb"},
    automation_condition=hourly_accuracy(),
    ins={
        "temperature_predictions": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-168, end_offset=-1, allow_nonexistent_upstream_partitions=True
            )
        ),
        "temperature_actuals": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-167, end_offset=0, allow_nonexistent_upstream_partitions=True
            )
        ),
    },
    metadata=warehouse_table(
        "weather",
        ("target_hour", "TIMESTAMP", "The scored hour (UTC)."),
        ("predicted_c", "DOUBLE", "What was predicted an hour earlier, °C."),
        ("actual_c", "DOUBLE", "The observed hourly mean, °C."),
        ("squared_error", "DOUBLE", "(predicted - actual)², °C²."),
        ("mse_24h", "DOUBLE", "sklearn mean_squared_error over the last 24 scored hours."),
        ("hours_24h", "BIGINT", "Scored hours in the 24 h window."),
        ("mse_7d", "DOUBLE", "The same over the last 7 days."),
        ("hours_7d", "BIGINT", "Scored hours in the 7 d window."),
        ("model_version", "VARCHAR", "Model that made the prediction."),
        partition_expr="target_hour",
    ),
)
def temperature_accuracy(
    context: dg.AssetExecutionContext,
    temperature_predictions: pl.DataFrame,
    temperature_actuals: pl.DataFrame,
) -> pl.DataFrame:
    """Prediction vs actual for the hour, with rolling 24 h and 7 d MSE (also as numeric
    metadata, so the Dagster UI plots them over time)."""
    rows = []
    for hour in window_starts(context.partition_time_window, HOUR):
        target = clock.naive_utc(hour)
        scores = rolling_accuracy(temperature_predictions, temperature_actuals, target)
        if scores["predicted_c"] is None or scores["actual_c"] is None:
            # The first hour after start-up has nothing to score yet: no row, not a failed run.
            context.log.warning(f"no prediction/actual pair for {target:%Y-%m-%d %H:%M} UTC yet")
            continue
        error = (scores["predicted_c"] - scores["actual_c"]) ** 2
        rows.append({"target_hour": target, "squared_error": error, **scores})
    frame = (
        pl.DataFrame(rows, schema=ACCURACY_SCHEMA) if rows else pl.DataFrame(schema=ACCURACY_SCHEMA)
    )
    if rows:
        last = rows[-1]
        context.add_output_metadata(
            {
                "squared_error": dg.MetadataValue.float(last["squared_error"]),
                "mse_24h": dg.MetadataValue.float(last["mse_24h"]),
                "mse_7d": dg.MetadataValue.float(last["mse_7d"]),
                "hours_24h": last["hours_24h"],
                "hours_7d": last["hours_7d"],
            }
        )
    else:
        context.add_output_metadata({"scored_hours": 0})
    return frame.select(list(ACCURACY_SCHEMA))


TEMPERATURE_ASSETS = [
    temperature_model,
    temperature_actuals,
    temperature_predictions,
    temperature_accuracy,
]
