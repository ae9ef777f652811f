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

Each rule is one helper from frame to frame (``CLEANING_STEPS``, in this order:
``_flag_malformed``, ``_parse_timestamp``, ``_null_sentinels``, ``_null_out_of_bounds``,
``_flag_missing_temperature``, ``_add_bucket`` (the shared group of rules 5 and 6, not a rule),
``_flag_duplicates``, ``_flag_outliers``). A rejecting rule only sets ``_reason`` where it is
still null; a field fix nulls the field on every row and counts it on the rows still in.
``etl_polars`` has the same helpers under the same names, and a test compares them pairwise.

Fixed buckets rather than a centred sliding window: a sliding exact median costs one sort per
row of the window (900 values at 1 Hz), a bucket median one sort per bucket.

Timestamps: Spark's ``TimestampType`` (an instant). Bucket starts, dates and hours are computed
from epoch seconds, so they are UTC even if the session time zone is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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

# The state the cleaning steps pass on (both engines): the raw columns (``observed_at`` a
# timestamp from rule 1 on), the first reason that rejected the row (null while it is in), the
# fields each field fix nulled in it, and the bucket rules 5 and 6 group by.
REASON = "_reason"
SENTINEL_COUNT = "_sentinels"
OUT_OF_BOUNDS_COUNT = "_out_of_bounds"
BUCKET = "_bucket"
FLAGGED_COLUMNS = (*RAW_COLUMNS, REASON, SENTINEL_COUNT, OUT_OF_BOUNDS_COUNT)

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


def _reject(df: DataFrame, reason: str, condition: Column) -> DataFrame:
    """Reject under ``reason`` the rows where ``condition`` holds; an earlier reason stays."""
    return df.withColumn(REASON, F.coalesce(F.col(REASON), F.when(condition, F.lit(reason))))


def _null_fields(
    df: DataFrame, count_column: str, is_bad: Callable[[Column, str], Column]
) -> DataFrame:
    """Null every measurement where ``is_bad(value, name)`` holds; ``count_column`` counts the
    nulled fields per row, for the rows still in (``FIELD_FIXES`` count only those)."""
    still_in = F.col(REASON).isNull()
    bad = {name: _flag(is_bad(F.col(name), name)) for name in MEASUREMENTS}
    counted = [(still_in & bad[name]).cast("long") for name in MEASUREMENTS]
    return df.withColumns(
        {
            **{
                name: F.when(bad[name], F.lit(None)).otherwise(F.col(name)) for name in MEASUREMENTS
            },
            count_column: sum(counted[1:], counted[0]),
        }
    )


def _flag_malformed(raw: DataFrame) -> DataFrame:
    """Rule 0, ``malformed``: starts the state (raw columns + ``_reason``)."""
    malformed = _flag(F.col(STATION).isNull() | (F.trim(F.col(STATION)) == ""))
    if CORRUPT_RECORD in raw.columns:
        malformed = malformed | F.col(CORRUPT_RECORD).isNotNull()
    return raw.select(*RAW_COLUMNS, F.when(malformed, F.lit("malformed")).alias(REASON))


def _parse_timestamp(df: DataFrame) -> DataFrame:
    """Rule 1, ``bad_timestamp``: ``observed_at`` text -> UTC timestamp, null if rejected."""
    text = F.col(OBSERVED_AT)
    parsed = F.when(
        text.rlike(TIMESTAMP_REGEX), F.try_to_timestamp(text, F.lit(SPARK_TIMESTAMP_FORMAT))
    )
    return _reject(df.withColumn(OBSERVED_AT, parsed), "bad_timestamp", F.col(OBSERVED_AT).isNull())


def _null_sentinels(df: DataFrame) -> DataFrame:
    """Rule 2, ``sentinel_values`` (field fix): -999 / -9999 -> null, counted in ``_sentinels``."""
    return _null_fields(df, SENTINEL_COUNT, lambda value, _name: value.isin(*SENTINELS))


def _null_out_of_bounds(df: DataFrame) -> DataFrame:
    """Rule 3, ``out_of_bounds_values`` (field fix): NaN or outside ``BOUNDS`` -> null."""

    def outside(value: Column, name: str) -> Column:
        low, high = BOUNDS[name]
        return F.isnan(value) | (value < low) | (value > high)

    return _null_fields(df, OUT_OF_BOUNDS_COUNT, outside)


def _flag_missing_temperature(df: DataFrame) -> DataFrame:
    """Rule 4, ``missing_temperature``: no temperature left after rules 2 and 3."""
    return _reject(df, "missing_temperature", F.col("temperature_c").isNull())


def _add_bucket(df: DataFrame) -> DataFrame:
    """Not a rule: the station's 15-minute bucket (epoch seconds), the group of rules 5 and 6."""
    seconds = _epoch_seconds(OBSERVED_AT)
    return df.withColumn(BUCKET, _bucket_start_seconds(seconds, OUTLIER_BUCKET_MINUTES * 60))


def _flag_duplicates(df: DataFrame) -> DataFrame:
    """Rule 5, ``duplicate``: all but the first row per (station, observed_at) still in."""
    still_in = F.col(REASON).isNull()
    # By bucket, not by key: a (station, observed_at) pair always falls in one bucket, and
    # rule 6 then reuses this shuffle.
    ordered = Window.partitionBy(STATION, BUCKET).orderBy(
        still_in.desc(),
        F.col(OBSERVED_AT).asc(),
        *(F.col(name).asc_nulls_last() for name in MEASUREMENTS),
    )
    repeats = F.lag(still_in).over(ordered) & (
        F.lag(OBSERVED_AT).over(ordered) == F.col(OBSERVED_AT)
    )
    return _reject(df, "duplicate", still_in & _flag(repeats))


def _flag_outliers(df: DataFrame) -> DataFrame:
    """Rule 6, ``outlier``: temperature too far from its station's bucket median."""
    judged = F.col(REASON).isNull()
    temperature = F.col("temperature_c")
    in_bucket = Window.partitionBy(STATION, BUCKET)
    median = F.percentile(F.when(judged, temperature), F.lit(0.5)).over(in_bucket)
    df = df.withColumn("_deviation", F.when(judged, F.abs(temperature - median)))
    mad = F.percentile(F.col("_deviation"), F.lit(0.5)).over(in_bucket)
    threshold = F.greatest(F.lit(OUTLIER_K * MAD_TO_SIGMA) * mad, F.lit(OUTLIER_FLOOR_C))
    return _reject(df, "outlier", F.col("_deviation") > threshold).drop("_deviation")


# Rule by rule, in the documented order; ``etl_polars.CLEANING_STEPS`` has the same names.
CLEANING_STEPS = (
    _flag_malformed,
    _parse_timestamp,
    _null_sentinels,
    _null_out_of_bounds,
    _flag_missing_temperature,
    _add_bucket,
    _flag_duplicates,
    _flag_outliers,
)


def clean_observations(raw: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """Apply the module's rules; return the clean rows and the counts per reason and per fix.

    The counts need one pass over the data, so the flagged rows are materialised once
    (``localCheckpoint``: executor memory, spilling to disk; freed when the frame is garbage
    collected) and the clean rows are read from there instead of re-reading and re-shuffling
    the raw files when the caller writes them. Executors holding it are kept by dynamic
    allocation (cached blocks), but a lost executor fails the write instead of recomputing.
    Clean rows are ordered by station and time (the input may be out of order).
    """
    df = raw
    for step in CLEANING_STEPS:
        df = step(df)
    flagged = df.select(*FLAGGED_COLUMNS).localCheckpoint(eager=True)
    return _clean_rows(flagged), _count(flagged)


def _count(flagged: DataFrame) -> dict[str, int]:
    """Input rows, rejections per reason, fixes per kind and clean rows, in one pass."""
    totals = flagged.agg(
        F.count(F.lit(1)).alias("input_rows"),
        *(F.count(F.when(F.col(REASON) == r, 1)).alias(r) for r in REJECT_REASONS),
        F.coalesce(F.sum(SENTINEL_COUNT), F.lit(0)).alias("sentinel_values"),
        F.coalesce(F.sum(OUT_OF_BOUNDS_COUNT), F.lit(0)).alias("out_of_bounds_values"),
    ).first()
    counts = {key: int(totals[key]) for key in ("input_rows", *REJECT_REASONS, *FIELD_FIXES)}
    counts["clean_rows"] = counts["input_rows"] - sum(counts[r] for r in REJECT_REASONS)
    return counts


def _clean_rows(flagged: DataFrame) -> DataFrame:
    """The rows no rule rejected, with their UTC date, ordered by station and time."""
    return (
        flagged.where(F.col(REASON).isNull())
        .select(
            F.col(STATION),
            F.col(OBSERVED_AT),
            _utc_date(_epoch_seconds(OBSERVED_AT)).alias(OBSERVED_DATE),
            *(F.col(name) for name in MEASUREMENTS),
        )
        .orderBy(STATION, OBSERVED_AT)
    )


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
        _mean_direction(F.col("_east"), F.col("_north")).alias("wind_deg_mean"),
    ).orderBy(STATION, BUCKET_START)


def _mean_direction(east: Column, north: Column) -> Column:
    """Degrees in [0, 360) of the mean unit vector (east, north); null when it is calm."""
    degrees = F.degrees(F.atan2(east, north))
    degrees = F.when(degrees < 0, degrees + 360.0).otherwise(degrees)
    resultant = F.sqrt(east**2 + north**2)
    return F.when(resultant >= CALM_RESULTANT, F.when(degrees >= 360.0, 0.0).otherwise(degrees))


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
