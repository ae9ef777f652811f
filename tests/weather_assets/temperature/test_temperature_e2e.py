"""End to end in simulated mode: raw readings -> Spark ETL -> model -> predictions -> accuracy."""

from __future__ import annotations

import os

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_pyspark import LazyPySparkResource
from sklearn.metrics import mean_squared_error

from weather_assets.observations.assets import OBSERVATION_ASSETS, dataset_uri, spark_cluster_report
from weather_assets.stations.feed import StationFeed
from weather_assets.temperature.assets import TEMPERATURE_ASSETS
from weather_assets.temperature.checks import TEMPERATURE_CHECKS

model, actuals, predictions, accuracy = TEMPERATURE_ASSETS


def ranged(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


@pytest.fixture
def resources(platform_resources, spark):
    return {
        **platform_resources,
        # getOrCreate hands the assets the test session (local[1]) already running.
        "pyspark": LazyPySparkResource(spark_config={"spark.master": "local[1]"}),
        "station_feed": StationFeed(stations="office,amsterdam", interval_s=60.0),
    }


def test_raw_to_accuracy(resources, instance):
    def run(selection, **kwargs):
        result = dg.materialize(
            [*OBSERVATION_ASSETS, *TEMPERATURE_ASSETS, *TEMPERATURE_CHECKS],
            selection=selection,
            resources=resources,
            instance=instance,
            **kwargs,
        )
        assert result.success
        return result

    # Six days of readings through the Spark ETL, one run.
    etl = run(OBSERVATION_ASSETS, tags=ranged("2026-11-10", "2026-11-15"))
    clean_meta = etl.asset_materializations_for_node("weather_observations_clean")[0].metadata
    assert clean_meta["dagster/row_count"].value > 0.9 * 6 * 2 * 1440
    assert sum(v.value for k, v in clean_meta.items() if k.startswith("rejected_")) > 0

    trained = run([model])
    meta = trained.asset_materializations_for_node("temperature_model")[0].metadata
    assert meta["holdout_hours"].value > 0
    assert {"holdout_mse_model", "holdout_mse_reference", "holdout_mse_persistence"} <= set(meta)

    run([actuals], tags=ranged("2026-11-15-00:00", "2026-11-16-06:00"))
    run([predictions], tags=ranged("2026-11-16-00:00", "2026-11-16-05:00"))
    run([predictions], partition_key="2026-11-16-05:00")  # a re-run keeps one row
    # The first hour has no earlier prediction: no row, no failed run, and the MSE check (whose
    # table does not exist yet) passes saying nothing was scored.
    first = run([accuracy], partition_key="2026-11-16-00:00")
    (check,) = first.get_asset_check_evaluations()
    assert check.passed and check.metadata["scored_hours"].value == 0
    scored = run([accuracy], tags=ranged("2026-11-16-01:00", "2026-11-16-06:00"))
    assert scored.asset_materializations_for_node("temperature_accuracy")[0].metadata["mse_24h"]

    with duckdb.connect(resources["warehouse"].database, read_only=True) as conn:
        preds = conn.execute(
            "select target_hour, predicted_c from weather.temperature_predictions order by 1"
        ).pl()
        acc = conn.execute("select * from weather.temperature_accuracy order by target_hour").pl()
        acts = conn.execute("select * from weather.temperature_actuals order by timestamp").pl()
    assert preds.height == 6 and preds["target_hour"].n_unique() == 6
    assert acc.height == 6
    joined = acc.join(acts, left_on="target_hour", right_on="timestamp")
    assert (joined["actual_c"] - joined["temperature_c"]).abs().max() < 1e-12
    assert (acc["squared_error"] - (acc["predicted_c"] - acc["actual_c"]) ** 2).abs().max() < 1e-12
    assert acc["mse_24h"][-1] == pytest.approx(
        mean_squared_error(acc["actual_c"], acc["predicted_c"])
    )
    assert acc["mse_24h"][-1] < 2.0, "next-hour error of a sane model is well under 2 °C²"

    # The hourly actual is the Spark ETL's office hourly mean for the same hour.
    hourly = pl.read_parquet(
        f"{dataset_uri(resources['object_store'], 'observations_hourly')}/**/*.parquet",
        hive_partitioning=True,
    ).filter(pl.col("station_id") == "office")
    spark_means = hourly.select(
        pl.col("bucket_start").dt.replace_time_zone(None).alias("timestamp"), "temperature_mean"
    )
    same_hours = acts.join(spark_means, on="timestamp")
    assert same_hours.height == 24
    assert (same_hours["temperature_c"] - same_hours["temperature_mean"]).abs().max() < 1e-9


def test_cluster_report_reads_the_live_session(resources, instance):
    result = dg.materialize([spark_cluster_report], resources=resources, instance=instance)
    meta = result.asset_materializations_for_node("spark_cluster_report")[0].metadata
    assert meta["spark_version"].value.startswith("4.")
    assert "local" in meta["master"].value
    # Which cloud the driver runs on (resources/cloud.py tests the detection) and its cwd.
    assert meta["cloud"].value in {"aws", "gcp", "azure", "none detected"}
    assert meta["cloud_evidence"].value
    assert meta["driver_working_directory"].value == os.getcwd()
