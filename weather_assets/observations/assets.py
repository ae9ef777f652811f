"""Dagster wiring of the raw-readings ETL: raw CSV -> clean -> 15 min / hourly -> features (PySpark).

Datasets are parquet partitioned by ``observed_date`` under the object store
(``{S3_PREFIX}/weather/<dataset>/observed_date=YYYY-MM-DD/``); a daily partition is rewritten
whole (dynamic partition overwrite), so re-running a day gives the same data, once.
"""

import functools
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resources.asset_metadata import column_schema, warehouse_table
from resources.cloud import detect_cloud
from resources.object_store import ObjectStore
from resources.spark import SPARK_POOL, cluster_facts, to_spark_uri
from resources.warehouse import DUCKDB_POOL
from weather_assets.automation import nightly_etl
from weather_assets.locations import CoordinateRegistry
from weather_assets.observations import etl_spark as etl
from weather_assets.partitions import DAILY, window_starts
from weather_assets.stations.feed import StationFeed, to_csv_bytes
from weather_assets.stations.poll_store import read_polls

RAW_PREFIX = "weather/observations_raw"


# Every stage is a daily partition of one UTC day; a range of days is backfilled in one run.
# All stages share one condition, so a day is requested through the whole ETL at once.
daily_asset = functools.partial(
    dg.asset,
    group_name="weather",
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=nightly_etl(),
)
# The Spark stages: parquet datasets, one Spark job at a time (the spark pool).
spark_dataset = functools.partial(daily_asset, kinds={"pyspark", "parquet"}, pool=SPARK_POOL)


def dataset_uri(store: ObjectStore, name: str) -> str:
    """Where Spark reads/writes a dataset: a local path, or s3a:// on S3."""
    return to_spark_uri(store.uri(store.key("weather", name)))


def _days(context: dg.AssetExecutionContext) -> list[str]:
    return [
        f"{d:%Y-%m-%d}" for d in window_starts(context.partition_time_window, timedelta(days=1))
    ]


def _for_days(df: DataFrame, days: list[str]) -> DataFrame:
    return df.where(F.col(etl.OBSERVED_DATE).cast("string").isin(days))


_STATION = ("station_id", "VARCHAR", "Registry id of the station (locations.csv).")
_MEASUREMENTS = [
    ("temperature_c", "DOUBLE", "Air temperature, °C."),
    ("humidity_pct", "DOUBLE", "Relative humidity, %."),
    ("pressure_hpa", "DOUBLE", "Sea-level pressure, hPa."),
    ("wind_speed_ms", "DOUBLE", "Wind speed, m/s."),
    ("wind_deg", "DOUBLE", "Wind direction, degrees from north."),
]
_AGGREGATE = [
    _STATION,
    ("bucket_start", "TIMESTAMP", "UTC start of the bucket."),
    ("observed_date", "DATE", "UTC date of the bucket (partition column)."),
    ("temperature_mean", "DOUBLE", "Mean temperature in the bucket, °C."),
    ("temperature_min", "DOUBLE", "Minimum temperature, °C."),
    ("temperature_max", "DOUBLE", "Maximum temperature, °C."),
    ("temperature_count", "BIGINT", "Clean readings in the bucket."),
    ("humidity_mean", "DOUBLE", "Mean relative humidity, %."),
    ("pressure_mean", "DOUBLE", "Mean pressure, hPa."),
    ("wind_speed_mean", "DOUBLE", "Mean wind speed, m/s."),
    ("wind_deg_mean", "DOUBLE", "Vector-mean wind direction, degrees (null when calm)."),
]


@daily_asset(
    kinds={"python", "csv", "s3"},
    metadata={
        **column_schema(
            _STATION,
            ("observed_at", "VARCHAR", "ISO-8601 UTC, second precision, as received."),
            *_MEASUREMENTS,
        ),
        "format": "CSV as received, one object per day",
    },
)
def weather_observations_raw(
    context: dg.AssetExecutionContext,
    station_feed: StationFeed,
    coordinates: CoordinateRegistry,
    object_store: ObjectStore,
) -> dg.MaterializeResult:
    """Raw station readings of one UTC day, stored exactly as received (junk included).

    Second-precision timestamps, temperature, humidity, pressure and wind for the office and a
    few more stations (OBSERVATION_STATIONS). Simulated: a diurnal and synoptic signal with
    nulls, -999 sentinels, absurd values, spikes, duplicates and late rows; live: One Call 3.0
    timemachine, hourly.
    """
    stations = station_feed.select(coordinates.load())
    rows, uris = 0, []
    for day in _days(context):
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        end = start + timedelta(days=1)
        polls = read_polls(object_store, start, end) if station_feed.source.live else None
        frame = station_feed.readings(stations, start, end, polls=polls)
        key = object_store.key(RAW_PREFIX, f"observed_date={day}", "readings.csv")
        uris.append(object_store.put_bytes(key, to_csv_bytes(frame), content_type="text/csv"))
        rows += frame.height
    return dg.MaterializeResult(
        metadata={
            "source": station_feed.source.mode,
            "stations": ", ".join(s.location_id for s in stations),
            "days": len(uris),
            "dagster/row_count": rows,
            "path": uris[-1],
        }
    )


@spark_dataset(
    deps=[weather_observations_raw],
    metadata=column_schema(
        _STATION,
        ("observed_at", "TIMESTAMP", "UTC instant, second precision."),
        ("observed_date", "DATE", "UTC date (partition column)."),
        *_MEASUREMENTS,
    ),
)
def weather_observations_clean(
    context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, object_store: ObjectStore
) -> dg.MaterializeResult:
    """Readings with the noise removed: bad timestamps, sentinels, out-of-bounds values, rows
    without a temperature, duplicates and per-station outliers (rules in etl_spark).
    Counts per rejection reason are in the metadata."""
    spark = pyspark.spark_session
    days = _days(context)
    paths = [
        to_spark_uri(
            object_store.uri(object_store.key(RAW_PREFIX, f"observed_date={d}", "readings.csv"))
        )
        for d in days
    ]
    raw = etl.read_raw_csv(spark, paths)
    clean, counts = etl.clean_observations(raw)
    clean = _for_days(clean, days).cache()
    etl.write_partitioned_parquet(
        clean,
        dataset_uri(object_store, "observations_clean"),
        etl.OBSERVED_DATE,
        sort_by=(etl.STATION, etl.OBSERVED_AT),
    )
    kept = clean.count()
    clean.unpersist()
    return dg.MaterializeResult(
        metadata={
            **{f"rejected_{k}": v for k, v in counts.items() if k in etl.REJECT_REASONS},
            **{f"fixed_{k}": v for k, v in counts.items() if k in etl.FIELD_FIXES},
            "dagster/row_count": kept,
            "path": dataset_uri(object_store, "observations_clean"),
        }
    )


def _aggregate_asset(name: str, minutes: int, description: str):
    @spark_dataset(
        name=name,
        deps=[weather_observations_clean],
        metadata=column_schema(*_AGGREGATE),
        description=description,
    )
    def _asset(
        context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, object_store: ObjectStore
    ) -> dg.MaterializeResult:
        spark = pyspark.spark_session
        days = _days(context)
        clean = _for_days(spark.read.parquet(dataset_uri(object_store, "observations_clean")), days)
        table = etl.aggregate(clean, minutes).cache()
        path = dataset_uri(object_store, name.removeprefix("weather_"))
        etl.write_partitioned_parquet(
            table, path, etl.OBSERVED_DATE, sort_by=(etl.STATION, etl.BUCKET_START)
        )
        rows = table.count()
        table.unpersist()
        return dg.MaterializeResult(metadata={"dagster/row_count": rows, "path": path})

    return _asset


weather_observations_15min = _aggregate_asset(
    "weather_observations_15min",
    15,
    "Quarter-hour aggregates per station: temperature mean/min/max/count, mean humidity, "
    "pressure and wind speed, vector-mean wind direction.",
)
weather_observations_hourly = _aggregate_asset(
    "weather_observations_hourly",
    60,
    "Hourly aggregates per station (same columns as the quarter-hour table); the model's "
    "training data.",
)


@spark_dataset(
    deps=[weather_observations_hourly],
    metadata=column_schema(
        *_AGGREGATE,
        *[
            (f"temperature_lag_{h}h", "DOUBLE", f"Hourly mean {h} h earlier (null if missing).")
            for h in etl.LAG_HOURS
        ],
        ("temperature_delta_1h", "DOUBLE", "This hour minus the hour before."),
        ("temperature_delta_24h", "DOUBLE", "This hour minus the same hour yesterday."),
        ("hour_sin", "DOUBLE", "Hour of day on the unit circle (sine)."),
        ("hour_cos", "DOUBLE", "Hour of day on the unit circle (cosine)."),
        ("temperature_rolling_mean_24h", "DOUBLE", "Mean of the last 24 hourly means."),
        ("target_temperature_next_hour", "DOUBLE", "Next hour's mean (the label)."),
    ),
)
def weather_observations_features(
    context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, object_store: ObjectStore
) -> dg.MaterializeResult:
    """Hourly model features per station: lags by timestamp (1, 2, 23, 24 h), deltas, hour of
    day harmonics, 24 h rolling mean and the next-hour target."""
    spark = pyspark.spark_session
    days = _days(context)
    first = datetime.fromisoformat(days[0]) - timedelta(days=1)
    last = datetime.fromisoformat(days[-1]) + timedelta(days=1)
    window = [f"{first + timedelta(days=i):%Y-%m-%d}" for i in range((last - first).days + 1)]
    hourly = _for_days(spark.read.parquet(dataset_uri(object_store, "observations_hourly")), window)
    features = _for_days(etl.hourly_features(hourly), days).cache()
    path = dataset_uri(object_store, "observations_features")
    etl.write_partitioned_parquet(
        features, path, etl.OBSERVED_DATE, sort_by=(etl.STATION, etl.BUCKET_START)
    )
    rows = features.count()
    features.unpersist()
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, "path": path})


@dg.op(out=dg.Out(io_manager_key="object_io_manager"), pool=SPARK_POOL)
def read_spark_cluster(pyspark: LazyPySparkResource) -> dict[str, str]:
    """Starts the Spark session and probes the cloud's metadata endpoints: the slow part, and
    network I/O, so it runs outside the duckdb pool (one Spark job at a time, as the ETL)."""
    spark = pyspark.spark_session
    cloud = detect_cloud(os.environ)
    facts = {
        **cluster_facts(spark),
        "cloud": cloud.cloud,
        "cloud_evidence": cloud.evidence,
        "driver_working_directory": spark.sparkContext._jvm.System.getProperty("user.dir"),
    }
    return {k: str(v) if v is not None else "None" for k, v in facts.items()}


@dg.op(pool=DUCKDB_POOL)
def write_spark_cluster_report(
    context: dg.OpExecutionContext, facts: dict[str, str]
) -> pl.DataFrame:
    """The facts as the warehouse table (and as metadata): the only part holding the duckdb
    pool slot."""
    context.add_output_metadata({k: dg.MetadataValue.text(v) for k, v in facts.items()})
    return pl.DataFrame(
        {"fact": list(facts), "value": list(facts.values())},
        schema={"fact": pl.String, "value": pl.String},
    )


@dg.graph_asset(
    group_name="weather",
    kinds={"pyspark", "duckdb"},
    metadata=warehouse_table(
        "weather",
        ("fact", "VARCHAR", "What is reported (host, spark_version, master, ...)."),
        ("value", "VARCHAR", "Its value, read from the live session."),
    ),
)
def spark_cluster_report():
    """The Spark cluster the ETL runs on, read from the live session: host, Spark version and
    install path, master, executors with cores and memory, user, driver, catalog, warehouse
    and metastore; and the cloud the driver runs on (``resources.cloud``: environment or
    instance metadata, at most a second) and the driver's working directory."""
    return write_spark_cluster_report(read_spark_cluster())


OBSERVATION_ASSETS = [
    weather_observations_raw,
    weather_observations_clean,
    weather_observations_15min,
    weather_observations_hourly,
    weather_observations_features,
]
