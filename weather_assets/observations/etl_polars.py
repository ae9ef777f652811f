"""The cleaning and aggregation rules of ``etl_spark``, in polars (no Dagster here).

Three uses: production (``temperature_actuals`` cleans and averages one hour of the office's
readings, too small a job to start Spark for), the benchmark (what Spark costs on one machine
against polars on the same data), and a test that both engines give the same counts and
aggregates, rule by rule, which keeps them from drifting apart. Constants and the rules'
documentation live in ``etl_spark``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from weather_assets.observations.etl_spark import (
    BOUNDS,
    BUCKET_START,
    CALM_RESULTANT,
    CORRUPT_RECORD,
    FIELD_FIXES,
    MAD_TO_SIGMA,
    MEASUREMENTS,
    OBSERVED_AT,
    OBSERVED_DATE,
    OUTLIER_BUCKET_MINUTES,
    OUTLIER_FLOOR_C,
    OUTLIER_K,
    RAW_COLUMNS,
    REJECT_REASONS,
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


def clean_observations(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rules of ``etl_spark.clean_observations``, with the same counts."""
    malformed = pl.col(STATION).is_null() | (pl.col(STATION).str.strip_chars(" ") == "")
    if CORRUPT_RECORD in raw.columns:
        malformed = malformed | pl.col(CORRUPT_RECORD).is_not_null()
    text = pl.col(OBSERVED_AT)
    # Two parses: "Z" (the feed's form) fast; the rare "+HH:MM" rows only are rewritten first.
    zulu = text.str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False, time_unit="us", time_zone="UTC")
    offset = pl.when(~text.str.ends_with("Z")).then(text)
    offset = offset.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%:z", strict=False, time_unit="us", time_zone="UTC"
    )
    observed_at = (
        pl.when(text.str.contains(TIMESTAMP_REGEX)).then(pl.coalesce(zulu, offset)).cast(UTC_MICROS)
    )
    df = raw.lazy().select(
        pl.col(STATION),
        observed_at.alias(OBSERVED_AT),
        *(pl.col(name).cast(pl.Float64) for name in MEASUREMENTS),
        malformed.fill_null(False).alias("_malformed"),
    )
    reaches_field_rules = ~pl.col("_malformed") & pl.col(OBSERVED_AT).is_not_null()
    fixed, sentinels, out_of_bounds = [], [], []
    for name in MEASUREMENTS:
        value = pl.col(name)
        low, high = BOUNDS[name]
        is_sentinel = value.is_in(list(SENTINELS)).fill_null(False)
        is_out = ~is_sentinel & (value.is_nan() | (value < low) | (value > high)).fill_null(False)
        fixed.append(pl.when(is_sentinel | is_out).then(None).otherwise(value).alias(name))
        sentinels.append((reaches_field_rules & is_sentinel).cast(pl.Int64))
        out_of_bounds.append((reaches_field_rules & is_out).cast(pl.Int64))
    df = df.select(
        pl.col(STATION),
        pl.col(OBSERVED_AT),
        *fixed,
        pl.col("_malformed"),
        pl.sum_horizontal(sentinels).alias("_sentinels"),
        pl.sum_horizontal(out_of_bounds).alias("_out_of_bounds"),
    ).with_columns(
        pl.when(pl.col("_malformed"))
        .then(pl.lit("malformed"))
        .when(pl.col(OBSERVED_AT).is_null())
        .then(pl.lit("bad_timestamp"))
        .when(pl.col("temperature_c").is_null())
        .then(pl.lit("missing_temperature"))
        .alias("_reason"),
        _bucket_start(OBSERVED_AT, OUTLIER_BUCKET_MINUTES * 60).alias("_bucket"),
    )
    df = df.collect()
    early = df.filter(pl.col("_reason").is_not_null())
    # Rule 5: keep the first row per (station, time) ordered by the measurements, nulls last.
    # Only rows whose key repeats need the sort (a hash pass finds them).
    candidates = df.filter(pl.col("_reason").is_null()).with_columns(
        _repeated=pl.struct(STATION, OBSERVED_AT).is_duplicated()
    )
    repeated = candidates.filter(pl.col("_repeated")).sort(
        [STATION, OBSERVED_AT, *MEASUREMENTS], nulls_last=True
    )
    repeated = repeated.with_columns(
        pl.when(~pl.struct(STATION, OBSERVED_AT).is_first_distinct())
        .then(pl.lit("duplicate"))
        .alias("_reason")
    )
    candidates = pl.concat([candidates.filter(~pl.col("_repeated")), repeated])
    # Rule 6: exact median and MAD per station and bucket ("midpoint" equals Spark's percentile
    # at 0.5 to the last bit, so ties at the threshold fall the same way in both engines).
    judged = candidates.filter(pl.col("_reason").is_null())
    group = [STATION, "_bucket"]
    deviation = (pl.col("temperature_c") - pl.col("_median")).abs()
    judged = (
        judged.with_columns(
            pl.col("temperature_c").quantile(0.5, "midpoint").over(group).alias("_median")
        )
        .with_columns(deviation.alias("_deviation"))
        .with_columns(pl.col("_deviation").quantile(0.5, "midpoint").over(group).alias("_mad"))
    )
    threshold = pl.max_horizontal(OUTLIER_K * MAD_TO_SIGMA * pl.col("_mad"), OUTLIER_FLOOR_C)
    judged = judged.with_columns(
        pl.when(pl.col("_deviation") > threshold).then(pl.lit("outlier")).alias("_reason")
    )
    columns = [STATION, OBSERVED_AT, *MEASUREMENTS, "_reason", "_sentinels", "_out_of_bounds"]
    flagged = pl.concat(
        [
            early.select(columns),
            candidates.filter(pl.col("_reason").is_not_null()).select(columns),
            judged.select(columns),
        ]
    )
    reasons = flagged["_reason"].value_counts()
    found = dict(zip(reasons["_reason"].to_list(), reasons["count"].to_list(), strict=True))
    counts = {
        "input_rows": flagged.height,
        **{r: int(found.get(r, 0)) for r in REJECT_REASONS},
        "sentinel_values": int(flagged["_sentinels"].sum()),
        "out_of_bounds_values": int(flagged["_out_of_bounds"].sum()),
    }
    counts["clean_rows"] = counts["input_rows"] - sum(counts[r] for r in REJECT_REASONS)
    assert set(FIELD_FIXES) <= counts.keys()
    clean = (
        flagged.filter(pl.col("_reason").is_null())
        .select(
            pl.col(STATION),
            pl.col(OBSERVED_AT),
            pl.col(OBSERVED_AT).dt.date().alias(OBSERVED_DATE),
            *MEASUREMENTS,
        )
        .sort(STATION, OBSERVED_AT)
    )
    return clean, counts


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
    degrees = pl.arctan2(pl.col("_east"), pl.col("_north")) * (180.0 / math.pi)
    degrees = pl.when(degrees < 0).then(degrees + 360.0).otherwise(degrees)
    resultant = (pl.col("_east") ** 2 + pl.col("_north") ** 2).sqrt()
    wind_deg_mean = pl.when(resultant >= CALM_RESULTANT).then(
        pl.when(degrees >= 360.0).then(0.0).otherwise(degrees)
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
            wind_deg_mean.alias("wind_deg_mean"),
        )
        .sort(STATION, BUCKET_START)
        .collect()
    )
