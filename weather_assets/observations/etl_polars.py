"""The cleaning and aggregation rules of ``etl_spark``, in polars (no Dagster here).

Three uses: production (``temperature_actuals`` cleans and averages one hour of the office's
readings, too small a job to start Spark for), the benchmark (what Spark costs on one machine
against polars on the same data), and a test that both engines give the same counts and
aggregates, rule by rule, which keeps them from drifting apart. Constants and the rules'
documentation live in ``etl_spark``.

Each rule is a helper with the name and place in ``CLEANING_STEPS`` of its ``etl_spark`` twin,
on ``LazyFrame`` where Spark's take a ``DataFrame``, so the two files read side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from weather_assets.observations import etl_spark
from weather_assets.observations.etl_spark import (
    BOUNDS,
    BUCKET,
    BUCKET_START,
    CALM_RESULTANT,
    CORRUPT_RECORD,
    FIELD_FIXES,
    FLAGGED_COLUMNS,
    MAD_TO_SIGMA,
    MEASUREMENTS,
    OBSERVED_AT,
    OBSERVED_DATE,
    OUT_OF_BOUNDS_COUNT,
    OUTLIER_BUCKET_MINUTES,
    OUTLIER_FLOOR_C,
    OUTLIER_K,
    RAW_COLUMNS,
    REASON,
    REJECT_REASONS,
    SENTINEL_COUNT,
    SENTINELS,
    STATION,
    TIMESTAMP_REGEX,
)

UTC_MICROS = pl.Datetime("us", "UTC")
# Non-finite numbers Spark's CSV reader accepts (its NaN/Inf options and Java's parser).
JAVA_NON_FINITE = ["NaN", "+NaN", "-NaN", "Inf", "-Inf", "Infinity", "+Infinity", "-Infinity"]


def read_raw_csv(paths: str | Path | Sequence[str | Path]) -> pl.DataFrame:
    """Read raw CSV files the way Spark's PERMISSIVE reader does, for a like-for-like benchmark.

    Lines are split on commas (the files are unquoted); a line with the wrong number of fields
    or a non-number in a numeric column keeps its text in ``_corrupt_record``. Empty fields are
    null; numbers are trimmed first and NaN/Infinity spelled as Java spells them, as in Spark
    (Java-only suffixes such as ``1.5d`` are the known difference). The header must be
    ``RAW_COLUMNS``.
    """
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    frames = []
    for path in files:
        lines = pl.scan_lines(path, name="_line").collect()
        header = lines["_line"][0] if lines.height else None
        if header is None or header.strip().split(",") != list(RAW_COLUMNS):
            raise ValueError(f"{path}: header {header!r} is not {','.join(RAW_COLUMNS)}")
        frames.append(lines.slice(1))
    lines = pl.concat(frames) if frames else pl.DataFrame(schema={"_line": pl.String})
    fields = pl.col("_line").str.strip_suffix("\r").str.split(",")
    raw = lines.lazy().filter(pl.col("_line").str.strip_chars() != "").with_columns(_f=fields)
    field = {name: pl.col("_f").list.get(i, null_on_oob=True) for i, name in enumerate(RAW_COLUMNS)}
    numbers, unparsed = {}, []
    for name in MEASUREMENTS:
        text = field[name]
        number = text.cast(pl.Float64, strict=False)
        # Java trims before parsing; retrying only the failures keeps the common path fast.
        retry = pl.when(number.is_null() & (text != "")).then(text).str.strip_chars()
        number = pl.coalesce(number, retry.cast(pl.Float64, strict=False))
        # polars also reads "nan", "inf"...; Spark only the spellings in JAVA_NON_FINITE.
        spelled = pl.when(~number.is_finite()).then(text).str.strip_chars().is_in(JAVA_NON_FINITE)
        numbers[name] = pl.when(number.is_finite() | spelled).then(number)
        unparsed.append((text != "") & numbers[name].is_null())
    corrupt = (pl.col("_f").list.len() != len(RAW_COLUMNS)) | pl.any_horizontal(unparsed)
    return raw.select(
        *(pl.when(field[name] != "").then(field[name]).alias(name) for name in RAW_COLUMNS[:2]),
        *(numbers[name].alias(name) for name in MEASUREMENTS),
        pl.when(corrupt.fill_null(False)).then(pl.col("_line")).alias(CORRUPT_RECORD),
    ).collect()


def _bucket_start(column: str, width_s: int) -> pl.Expr:
    """Bucket start as epoch seconds; buckets are aligned to the epoch, hence to UTC days."""
    seconds = pl.col(column).dt.epoch("s")
    return seconds - seconds.mod(width_s)


def _reject(df: pl.LazyFrame, reason: str, condition: pl.Expr) -> pl.LazyFrame:
    """Reject under ``reason`` the rows where ``condition`` holds; an earlier reason stays."""
    return df.with_columns(
        pl.coalesce(pl.col(REASON), pl.when(condition).then(pl.lit(reason))).alias(REASON)
    )


def _null_fields(
    df: pl.LazyFrame, count_column: str, is_bad: Callable[[pl.Expr, str], pl.Expr]
) -> pl.LazyFrame:
    """Null every measurement where ``is_bad(value, name)`` holds; ``count_column`` counts the
    nulled fields per row, for the rows still in (``FIELD_FIXES`` count only those)."""
    still_in = pl.col(REASON).is_null()
    bad = {name: is_bad(pl.col(name), name).fill_null(False) for name in MEASUREMENTS}
    return df.with_columns(
        *(
            pl.when(bad[name]).then(None).otherwise(pl.col(name)).alias(name)
            for name in MEASUREMENTS
        ),
        pl.sum_horizontal([(still_in & bad[name]).cast(pl.Int64) for name in MEASUREMENTS]).alias(
            count_column
        ),
    )


def _flag_malformed(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 0, ``malformed``: starts the state (raw columns + ``_reason``)."""
    malformed = pl.col(STATION).is_null() | (pl.col(STATION).str.strip_chars(" ") == "")
    if CORRUPT_RECORD in raw.collect_schema().names():
        malformed = malformed | pl.col(CORRUPT_RECORD).is_not_null()
    return raw.select(
        pl.col(STATION),
        pl.col(OBSERVED_AT),
        *(pl.col(name).cast(pl.Float64) for name in MEASUREMENTS),
        pl.when(malformed).then(pl.lit("malformed")).alias(REASON),
    )


def _parse_timestamp(df: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 1, ``bad_timestamp``: ``observed_at`` text -> UTC timestamp, null if rejected."""
    text = pl.col(OBSERVED_AT)
    # Two parses: "Z" (the feed's form) fast; the rare "+HH:MM" rows only are rewritten first.
    zulu = text.str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False, time_unit="us", time_zone="UTC")
    offset = pl.when(~text.str.ends_with("Z")).then(text)
    offset = offset.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%:z", strict=False, time_unit="us", time_zone="UTC"
    )
    parsed = pl.when(text.str.contains(TIMESTAMP_REGEX)).then(pl.coalesce(zulu, offset))
    df = df.with_columns(parsed.cast(UTC_MICROS).alias(OBSERVED_AT))
    return _reject(df, "bad_timestamp", pl.col(OBSERVED_AT).is_null())


def _null_sentinels(df: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 2, ``sentinel_values`` (field fix): -999 / -9999 -> null, counted in ``_sentinels``."""
    return _null_fields(df, SENTINEL_COUNT, lambda value, _name: value.is_in(list(SENTINELS)))


def _null_out_of_bounds(df: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 3, ``out_of_bounds_values`` (field fix): NaN or outside ``BOUNDS`` -> null."""

    def outside(value: pl.Expr, name: str) -> pl.Expr:
        low, high = BOUNDS[name]
        return value.is_nan() | (value < low) | (value > high)

    return _null_fields(df, OUT_OF_BOUNDS_COUNT, outside)


def _flag_missing_temperature(df: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 4, ``missing_temperature``: no temperature left after rules 2 and 3."""
    return _reject(df, "missing_temperature", pl.col("temperature_c").is_null())


def _add_bucket(df: pl.LazyFrame) -> pl.LazyFrame:
    """Not a rule: the station's 15-minute bucket (epoch seconds), the group of rules 5 and 6."""
    return df.with_columns(_bucket_start(OBSERVED_AT, OUTLIER_BUCKET_MINUTES * 60).alias(BUCKET))


def _flag_duplicates(df: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 5, ``duplicate``: all but the first row per (station, observed_at) still in."""
    still_in = pl.col(REASON).is_null()
    key = pl.struct(STATION, OBSERVED_AT)
    # The branches below share the steps before; uncached, the optimiser pushes the filters
    # into them and runs those steps once per branch.
    df = df.cache()
    # Only rows whose key repeats need the sort (a hash pass finds them).
    candidates = df.filter(still_in).with_columns(_repeated=key.is_duplicated())
    repeated = candidates.filter(pl.col("_repeated")).sort(
        [STATION, OBSERVED_AT, *MEASUREMENTS], nulls_last=True
    )
    repeated = _reject(repeated, "duplicate", ~key.is_first_distinct())
    return pl.concat(
        [
            df.filter(~still_in),
            candidates.filter(~pl.col("_repeated")).drop("_repeated"),
            repeated.drop("_repeated"),
        ]
    )


def _flag_outliers(df: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 6, ``outlier``: temperature too far from its station's bucket median."""
    judged = pl.col(REASON).is_null()
    temperature = pl.col("temperature_c")
    in_bucket = [STATION, BUCKET]
    # "midpoint" equals Spark's percentile at 0.5 to the last bit, so ties at the threshold
    # fall the same way in both engines.
    median = pl.when(judged).then(temperature).quantile(0.5, "midpoint").over(in_bucket)
    df = df.with_columns(pl.when(judged).then((temperature - median).abs()).alias("_deviation"))
    mad = pl.col("_deviation").quantile(0.5, "midpoint").over(in_bucket)
    threshold = pl.max_horizontal(OUTLIER_K * MAD_TO_SIGMA * mad, OUTLIER_FLOOR_C)
    return _reject(df, "outlier", pl.col("_deviation") > threshold).drop("_deviation")


# Rule by rule, in the documented order: ``etl_spark.CLEANING_STEPS``, each step by the same
# name here (a step missing in this engine is a KeyError at import).
CLEANING_STEPS = tuple(globals()[step.__name__] for step in etl_spark.CLEANING_STEPS)


def clean_observations(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rules of ``etl_spark.clean_observations``, with the same counts."""
    df = raw.lazy()
    for step in CLEANING_STEPS:
        df = step(df)
    flagged = df.select(FLAGGED_COLUMNS).collect()
    return _clean_rows(flagged), _count(flagged)


def _count(flagged: pl.DataFrame) -> dict[str, int]:
    """Input rows, rejections per reason, fixes per kind and clean rows."""
    reasons = flagged[REASON].value_counts()
    found = dict(zip(reasons[REASON].to_list(), reasons["count"].to_list(), strict=True))
    counts = {
        "input_rows": flagged.height,
        **{r: int(found.get(r, 0)) for r in REJECT_REASONS},
        "sentinel_values": int(flagged[SENTINEL_COUNT].sum()),
        "out_of_bounds_values": int(flagged[OUT_OF_BOUNDS_COUNT].sum()),
    }
    counts["clean_rows"] = counts["input_rows"] - sum(counts[r] for r in REJECT_REASONS)
    assert set(FIELD_FIXES) <= counts.keys()
    return counts


def _clean_rows(flagged: pl.DataFrame) -> pl.DataFrame:
    """The rows no rule rejected, with their UTC date, ordered by station and time."""
    return (
        flagged.filter(pl.col(REASON).is_null())
        .select(
            pl.col(STATION),
            pl.col(OBSERVED_AT),
            pl.col(OBSERVED_AT).dt.date().alias(OBSERVED_DATE),
            *MEASUREMENTS,
        )
        .sort(STATION, OBSERVED_AT)
    )


def aggregate(clean: pl.DataFrame, minutes: int) -> pl.DataFrame:
    """The aggregates of ``etl_spark.aggregate`` (same columns, same vector mean)."""
    if minutes <= 0 or 1440 % minutes:
        raise ValueError(f"minutes must divide a day (1440), got {minutes}")
    radians = pl.col("wind_deg").radians()
    grouped = (
        clean.lazy()
        .with_columns(_bucket=_bucket_start(OBSERVED_AT, minutes * 60))
        .group_by(STATION, "_bucket")
        .agg(
            pl.col("temperature_c").mean().alias("temperature_mean"),
            pl.col("temperature_c").min().alias("temperature_min"),
            pl.col("temperature_c").max().alias("temperature_max"),
            pl.col("temperature_c").count().alias("temperature_count"),
            pl.col("humidity_pct").mean().alias("humidity_mean"),
            pl.col("pressure_hpa").mean().alias("pressure_mean"),
            pl.col("wind_speed_ms").mean().alias("wind_speed_mean"),
            radians.sin().mean().alias("_east"),
            radians.cos().mean().alias("_north"),
        )
    )
    start = pl.from_epoch(pl.col("_bucket"), time_unit="s").dt.replace_time_zone("UTC")
    return (
        grouped.select(
            pl.col(STATION),
            start.cast(UTC_MICROS).alias(BUCKET_START),
            start.dt.date().alias(OBSERVED_DATE),
            "temperature_mean",
            "temperature_min",
            "temperature_max",
            pl.col("temperature_count").cast(pl.Int64),
            "humidity_mean",
            "pressure_mean",
            "wind_speed_mean",
            _mean_direction(pl.col("_east"), pl.col("_north")).alias("wind_deg_mean"),
        )
        .sort(STATION, BUCKET_START)
        .collect()
    )


def _mean_direction(east: pl.Expr, north: pl.Expr) -> pl.Expr:
    """Degrees in [0, 360) of the mean unit vector (east, north); null when it is calm."""
    degrees = pl.arctan2(east, north) * (180.0 / math.pi)
    degrees = pl.when(degrees < 0).then(degrees + 360.0).otherwise(degrees)
    resultant = (east**2 + north**2).sqrt()
    return pl.when(resultant >= CALM_RESULTANT).then(
        pl.when(degrees >= 360.0).then(0.0).otherwise(degrees)
    )
