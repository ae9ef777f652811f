"""Raw weather-station readings -> clean rows -> quarter-hour / hour aggregates, in PySpark.

Pure functions on DataFrames (no Dagster here): the assets in the wiring module call them and
write the results. ``etl_polars`` implements the same rules; a test keeps them equal.

Cleaning rules, applied in this order. A rejected row is counted once, under the first reason
that rejects it; fixes to single fields keep the row and are counted separately
(``FIELD_FIXES``), over the rows that reach rule 2.

0. ``malformed``: the CSV parser flagged the line (wrong number of fields, a non-number in a
   numeric column) or it has no ``station_id``: nothing in it can be trusted or attributed.
1. ``bad_timestamp``: ``observed_at`` is not ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or a ``+HH:MM``
   offset, or is not a real instant (Feb 30, 25:00). Parsed to a UTC timestamp, second precision;
   no guessing of other layouts.
2. ``sentinel_values`` (field fix): -999 and -9999 are the loggers' "no reading" codes -> null.
3. ``out_of_bounds_values`` (field fix): a value outside its physical range (``BOUNDS``, inclusive;
   NaN and infinities included) -> null. The rest of the reading is still good.
4. ``missing_temperature``: temperature is still null; it is the target variable, so a row
   without it is of no use to the aggregates or the model.
5. ``duplicate``: more than one row for (station_id, observed_at): one is kept, the first when
   ordered by the measurements ascending, nulls last (deterministic, prefers complete rows).
6. ``outlier``: within its station's 15-minute bucket (``OUTLIER_BUCKET_MINUTES``), a reading
   whose temperature is more than ``max(OUTLIER_K * 1.4826 * MAD, OUTLIER_FLOOR_C)`` away from the
   bucket's exact median (MAD: median absolute deviation from that median; 1.4826 * MAD
   estimates a standard deviation). Medians ignore the spike they judge, so a single-reading
   spike of 8-20 C stands out against a quiet bucket. The floor (5 C) is what keeps real weather:
   a gradual front moves a few C an hour (< 1 C within 15 minutes) and even a sudden 3-4 C step
   that puts a minority of a bucket's readings on the new level stays under it; it sits between
   those steps and the smallest spikes (8 C). A bucket with a step in its middle has a large
   MAD, so that bucket tolerates more. With fewer than 3 readings no reading can be flagged.

Fixed buckets rather than a centred sliding window: a sliding exact median costs one sort per
row of the window (900 values at 1 Hz), a bucket median one sort per bucket.

Timestamps: Spark's ``TimestampType`` (an instant). Bucket starts, dates and hours are computed
from epoch seconds, so they are UTC even if the session time zone is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

STATION = "station_id"
OBSERVED_AT = "observed_at"
OBSERVED_DATE = "observed_date"
BUCKET_START = "bucket_start"
CORRUPT_RECORD = "_corrupt_record"
MEASUREMENTS = ("temperature_c", "humidity_pct", "pressure_hpa", "wind_speed_ms", "wind_deg")
RAW_COLUMNS = (STATION, OBSERVED_AT, *MEASUREMENTS)
CLEAN_COLUMNS = (STATION, OBSERVED_AT, OBSERVED_DATE, *MEASUREMENTS)

SENTINELS = (-999.0, -9999.0)
BOUNDS: dict[str, tuple[float, float]] = {
    "temperature_c": (-60.0, 60.0),
    "humidity_pct": (0.0, 100.0),
    "pressure_hpa": (870.0, 1085.0),
    "wind_speed_ms": (0.0, 75.0),
    "wind_deg": (0.0, 360.0),
}
OUTLIER_BUCKET_MINUTES = 15
OUTLIER_K = 5.0
MAD_TO_SIGMA = 1.4826
OUTLIER_FLOOR_C = 5.0
# Below this resultant length the mean wind direction is undefined (e.g. 0 and 180 degrees).
CALM_RESULTANT = 1e-9

REJECT_REASONS = ("malformed", "bad_timestamp", "missing_temperature", "duplicate", "outlier")
FIELD_FIXES = ("sentinel_values", "out_of_bounds_values")
# ASCII digits only ([0-9], not \d, which is Unicode-aware in polars).
# Month 01-12, day 01-31, hour 00-23, minute/second 00-59, then Z or a real-world UTC offset;
# the parser then rejects dates that do not exist (Feb 30).
TIMESTAMP_REGEX = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)
SPARK_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ssXXX"

RAW_SCHEMA = T.StructType(
    [
        T.StructField(STATION, T.StringType()),
        T.StructField(OBSERVED_AT, T.StringType()),
        *(T.StructField(name, T.DoubleType()) for name in MEASUREMENTS),
    ]
)


def read_raw_csv(spark: SparkSession, paths: str | Sequence[str]) -> DataFrame:
    """Read raw CSV files as received, malformed lines kept and marked, not fatal.

    An explicit schema (no inference pass, ``observed_at`` kept as text for rule 1) with a
    ``_corrupt_record`` column that holds the line Spark could not parse. The header must name
    the columns of ``RAW_COLUMNS`` in order: a file with another layout fails loudly instead of
    being read into the wrong columns. Pass files, not the ``date=...`` folders, or Spark adds
    a ``date`` column from the folder names.
    """
    schema = T.StructType([*RAW_SCHEMA.fields, T.StructField(CORRUPT_RECORD, T.StringType())])
    return (
        spark.read.schema(schema)
        .option("header", True)
        .option("enforceSchema", False)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .csv([paths] if isinstance(paths, str) else list(paths))
    )


def _flag(condition: Column) -> Column:
    """A null-safe boolean: SQL's three-valued logic would otherwise drop rows silently."""
    return F.coalesce(condition, F.lit(False))


def _epoch_seconds(column: str) -> Column:
    return F.unix_seconds(F.col(column))


def _bucket_start_seconds(seconds: Column, width_s: int) -> Column:
    return seconds - F.pmod(seconds, F.lit(width_s))


def clean_observations(raw: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """Apply the module's rules; return the clean rows and the counts per reason and per fix.

    The counts need one pass over the data, so the flagged rows are materialised once
    (``localCheckpoint``: executor memory, spilling to disk; freed when the frame is garbage
    collected) and the clean rows are read from there instead of re-reading and re-shuffling
    the raw files when the caller writes them. Executors holding it are kept by dynamic
    allocation (cached blocks), but a lost executor fails the write instead of recomputing.
    Clean rows are ordered by station and time (the input may be out of order).
    """
    malformed = _flag(F.col(STATION).isNull() | (F.trim(F.col(STATION)) == ""))
    if CORRUPT_RECORD in raw.columns:
        malformed = malformed | F.col(CORRUPT_RECORD).isNotNull()
    observed_at = F.when(
        F.col(OBSERVED_AT).rlike(TIMESTAMP_REGEX),
        F.try_to_timestamp(F.col(OBSERVED_AT), F.lit(SPARK_TIMESTAMP_FORMAT)),
    )
    df = raw.select(
        F.col(STATION),
        observed_at.alias(OBSERVED_AT),
        *(F.col(name) for name in MEASUREMENTS),
        malformed.alias("_malformed"),
    )
    reaches_field_rules = ~F.col("_malformed") & F.col(OBSERVED_AT).isNotNull()
    fixed, sentinels, out_of_bounds = [], [], []
    for name in MEASUREMENTS:
        value = F.col(name)
        low, high = BOUNDS[name]
        is_sentinel = _flag(value.isin(*SENTINELS))
        is_out = ~is_sentinel & _flag(F.isnan(value) | (value < low) | (value > high))
        fixed.append(F.when(is_sentinel | is_out, F.lit(None)).otherwise(value).alias(name))
        sentinels.append((reaches_field_rules & is_sentinel).cast("int"))
        out_of_bounds.append((reaches_field_rules & is_out).cast("int"))
    early_reason = (
        F.when(F.col("_malformed"), F.lit("malformed"))
        .when(F.col(OBSERVED_AT).isNull(), F.lit("bad_timestamp"))
        .when(F.col("temperature_c").isNull(), F.lit("missing_temperature"))
    )
    df = df.select(
        F.col(STATION),
        F.col(OBSERVED_AT),
        *fixed,
        F.col("_malformed"),
        sum(sentinels[1:], sentinels[0]).alias("_sentinels"),
        sum(out_of_bounds[1:], out_of_bounds[0]).alias("_out_of_bounds"),
    ).withColumn(
        "_bucket",
        _bucket_start_seconds(_epoch_seconds(OBSERVED_AT), OUTLIER_BUCKET_MINUTES * 60),
    )
    # The reason is computed on the fixed values (rule 4 sees nulls made by rules 2-3).
    df = df.withColumn("_reason", early_reason).withColumn("_eligible", F.col("_reason").isNull())

    # Rules 5 and 6 share one shuffle: a (station, observed_at) pair always falls in one bucket.
    in_bucket = Window.partitionBy(STATION, "_bucket")
    ordered = in_bucket.orderBy(
        F.col("_eligible").desc(),
        F.col(OBSERVED_AT).asc(),
        *(F.col(name).asc_nulls_last() for name in MEASUREMENTS),
    )
    duplicate = F.col("_eligible") & _flag(
        F.lag("_eligible").over(ordered) & (F.lag(OBSERVED_AT).over(ordered) == F.col(OBSERVED_AT))
    )
    df = df.withColumn("_duplicate", duplicate)
    judged = F.col("_eligible") & ~F.col("_duplicate")
    temperature = F.col("temperature_c")
    df = df.withColumn(
        "_median", F.percentile(F.when(judged, temperature), F.lit(0.5)).over(in_bucket)
    ).withColumn("_deviation", F.when(judged, F.abs(temperature - F.col("_median"))))
    df = df.withColumn("_mad", F.percentile(F.col("_deviation"), F.lit(0.5)).over(in_bucket))
    threshold = F.greatest(F.lit(OUTLIER_K * MAD_TO_SIGMA) * F.col("_mad"), F.lit(OUTLIER_FLOOR_C))
    reason = F.coalesce(
        F.col("_reason"),
        F.when(F.col("_duplicate"), F.lit("duplicate")),
        F.when(_flag(F.col("_deviation") > threshold), F.lit("outlier")),
    )
    flagged = df.select(
        F.col(STATION),
        F.col(OBSERVED_AT),
        *(F.col(name) for name in MEASUREMENTS),
        reason.alias("_reason"),
        F.col("_sentinels"),
        F.col("_out_of_bounds"),
    ).localCheckpoint(eager=True)

    totals = flagged.agg(
        F.count(F.lit(1)).alias("input_rows"),
        *(F.count(F.when(F.col("_reason") == r, 1)).alias(r) for r in REJECT_REASONS),
        F.coalesce(F.sum("_sentinels"), F.lit(0)).alias("sentinel_values"),
        F.coalesce(F.sum("_out_of_bounds"), F.lit(0)).alias("out_of_bounds_values"),
    ).first()
    counts = {key: int(totals[key]) for key in ("input_rows", *REJECT_REASONS, *FIELD_FIXES)}
    counts["clean_rows"] = counts["input_rows"] - sum(counts[r] for r in REJECT_REASONS)

    clean = (
        flagged.where(F.col("_reason").isNull())
        .select(
            F.col(STATION),
            F.col(OBSERVED_AT),
            _utc_date(_epoch_seconds(OBSERVED_AT)).alias(OBSERVED_DATE),
            *(F.col(name) for name in MEASUREMENTS),
        )
        .orderBy(STATION, OBSERVED_AT)
    )
    return clean, counts


def _utc_date(seconds: Column) -> Column:
    return F.date_from_unix_date(F.floor(seconds / F.lit(86400)).cast("int"))


def aggregate(clean: DataFrame, minutes: int) -> DataFrame:
    """Per station and ``minutes`` bucket (aligned to the UTC day): temperature mean, min, max
    and count; the mean humidity, pressure and wind speed (nulls ignored); the mean wind
    direction as the direction of the mean unit vector.

    An arithmetic mean of degrees is wrong across north (350 and 10 average to 180, not 0). The
    vector mean is null when the directions cancel out (resultant length < 1e-9). ``observed_date``
    is the bucket's UTC date, the partition column of the written tables.
    """
    if minutes <= 0 or 1440 % minutes:
        raise ValueError(f"minutes must divide a day (1440), got {minutes}")
    seconds = _bucket_start_seconds(_epoch_seconds(OBSERVED_AT), minutes * 60)
    radians = F.radians(F.col("wind_deg"))
    grouped = (
        clean.withColumn("_bucket", seconds)
        .groupBy(STATION, "_bucket")
        .agg(
            F.avg("temperature_c").alias("temperature_mean"),
            F.min("temperature_c").alias("temperature_min"),
            F.max("temperature_c").alias("temperature_max"),
            F.count("temperature_c").alias("temperature_count"),
            F.avg("humidity_pct").alias("humidity_mean"),
            F.avg("pressure_hpa").alias("pressure_mean"),
            F.avg("wind_speed_ms").alias("wind_speed_mean"),
            F.avg(F.sin(radians)).alias("_east"),
            F.avg(F.cos(radians)).alias("_north"),
        )
    )
    degrees = F.degrees(F.atan2(F.col("_east"), F.col("_north")))
    degrees = F.when(degrees < 0, degrees + 360.0).otherwise(degrees)
    resultant = F.sqrt(F.col("_east") ** 2 + F.col("_north") ** 2)
    wind_deg_mean = F.when(
        resultant >= CALM_RESULTANT, F.when(degrees >= 360.0, 0.0).otherwise(degrees)
    )
    return grouped.select(
        F.col(STATION),
        F.timestamp_seconds(F.col("_bucket")).alias(BUCKET_START),
        _utc_date(F.col("_bucket")).alias(OBSERVED_DATE),
        "temperature_mean",
        "temperature_min",
        "temperature_max",
        "temperature_count",
        "humidity_mean",
        "pressure_mean",
        "wind_speed_mean",
        wind_deg_mean.alias("wind_deg_mean"),
    ).orderBy(STATION, BUCKET_START)


LAG_HOURS = (1, 2, 23, 24)


def hourly_features(hourly: DataFrame) -> DataFrame:
    """Model features per station and hour, from ``aggregate(clean, 60)``; input columns kept.

    Lags, the rolling mean and the target look rows up by timestamp (range frames over epoch
    seconds), never by row position: when an hour is missing, the lag that points at it is
    null instead of silently being the hour before.

    - ``temperature_lag_{1,2,23,24}h``: the hourly mean that many hours earlier.
    - ``temperature_delta_1h`` / ``_24h``: this hour minus the lag (trend, day-over-day change).
    - ``hour_sin`` / ``hour_cos``: UTC hour of day on the unit circle, so 23 h is next to 0 h.
    - ``temperature_rolling_mean_24h``: mean of the hourly means in (t - 24 h, t], current hour
      included, over the hours present.
    - ``target_temperature_next_hour``: the mean of hour t + 1 h; null when that hour is missing.
    """
    seconds = _epoch_seconds(BUCKET_START)
    by_time = Window.partitionBy(STATION).orderBy(F.col("_t"))
    temperature = F.col("temperature_mean")

    def at_offset(hours: int) -> Column:
        return F.max(temperature).over(by_time.rangeBetween(hours * 3600, hours * 3600))

    df = hourly.withColumn("_t", seconds)
    lags = {h: at_offset(-h) for h in LAG_HOURS}
    hour_angle = F.floor(F.pmod(F.col("_t"), F.lit(86400)) / F.lit(3600)) * (2 * math.pi / 24)
    df = df.select(
        *hourly.columns,
        "_t",
        *(lags[h].alias(f"temperature_lag_{h}h") for h in LAG_HOURS),
    )
    return df.select(
        *hourly.columns,
        *(f"temperature_lag_{h}h" for h in LAG_HOURS),
        (temperature - F.col("temperature_lag_1h")).alias("temperature_delta_1h"),
        (temperature - F.col("temperature_lag_24h")).alias("temperature_delta_24h"),
        F.sin(hour_angle).alias("hour_sin"),
        F.cos(hour_angle).alias("hour_cos"),
        F.avg(temperature)
        .over(by_time.rangeBetween(-23 * 3600, 0))
        .alias("temperature_rolling_mean_24h"),
        at_offset(1).alias("target_temperature_next_hour"),
    ).orderBy(STATION, BUCKET_START)


def write_partitioned_parquet(
    df: DataFrame, path: str, partition_col: str, *, sort_by: Sequence[str] = ()
) -> None:
    """Write ``df`` as parquet partitioned by ``partition_col``, replacing only the partitions
    present in ``df`` (dynamic partition overwrite): re-running a day rewrites that day once and
    leaves the others alone.

    One file per partition value, rows ordered by ``sort_by`` inside it. Timestamps are written
    as TIMESTAMP_MICROS (UTC-adjusted), which polars and DuckDB read as UTC instants; Spark's
    INT96 default would come back as naive nanoseconds. The session setting is restored after.
    """
    spark = df.sparkSession
    key = "spark.sql.parquet.outputTimestampType"
    previous = spark.conf.get(key)
    spark.conf.set(key, "TIMESTAMP_MICROS")
    try:
        (
            df.repartition(partition_col)
            .sortWithinPartitions(partition_col, *sort_by)
            .write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy(partition_col)
            .parquet(path)
        )
    finally:
        spark.conf.set(key, previous)
