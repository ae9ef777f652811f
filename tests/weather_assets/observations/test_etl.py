"""The PySpark cleaning rules, aggregates and features on hand-written readings, and the polars
twin agreeing with them on a simulated day. One shared local[1] session (see conftest)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pyspark.sql import types as T

from weather_assets.observations import etl_polars as op
from weather_assets.observations import etl_spark as osp
from weather_assets.observations.etl_spark import RAW_COLUMNS, RAW_SCHEMA

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, tzinfo=UTC)

CLEAN_SCHEMA = T.StructType(
    [
        T.StructField("station_id", T.StringType()),
        T.StructField("observed_at", T.TimestampType()),
        T.StructField("observed_date", T.DateType()),
        *(T.StructField(name, T.DoubleType()) for name in osp.MEASUREMENTS),
    ]
)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_polars(df) -> pl.DataFrame:
    return pl.from_arrow(df.toArrow())


def raw_frames(spark, rows):
    """The same raw rows as a Spark and a polars frame."""
    return (
        spark.createDataFrame(rows, RAW_SCHEMA),
        pl.DataFrame(
            rows,
            schema=dict(zip(RAW_COLUMNS, [pl.String] * 2 + [pl.Float64] * 5, strict=True)),
            orient="row",
        ),
    )


def clean_frame(spark, rows):
    """Clean rows (station, time, t, h, p, ws, wd) as both engines' clean schema."""
    full = [(s, ts, ts.date(), *values) for s, ts, *values in rows]
    return (
        spark.createDataFrame(full, CLEAN_SCHEMA),
        pl.DataFrame(
            full,
            schema={
                "station_id": pl.String,
                "observed_at": pl.Datetime("us", "UTC"),
                "observed_date": pl.Date,
                **dict.fromkeys(osp.MEASUREMENTS, pl.Float64),
            },
            orient="row",
        ),
    )


def junk_rows():
    """Station A: smooth readings every minute with one of each kind of junk. Station B: a real,
    sudden 3 C drop at 12:12 that puts 3 of its bucket's 15 readings on the new level."""
    a = []
    for i in range(30):
        a.append(["A", iso(NOON + timedelta(minutes=i)), 10.0 + 0.02 * i, 60.0, 1010.0, 3.0, 200.0])
    a[3][3] = -999.0  # sentinel humidity: row kept, field nulled
    a[5][3] = 140.0  # humidity out of bounds: row kept, field nulled
    a[12][6] = 540.0  # wind direction out of bounds: row kept, field nulled
    a[7][2] = None  # no temperature
    a[8][2] = -999.0  # sentinel temperature -> no temperature
    a[20][2] += 15.0  # a single-reading spike
    rows = [tuple(r) for r in a]
    rows.append(rows[9])  # exact duplicate
    rows.append(rows.pop(11))  # out of order: arrives last
    rows.append(("A", "2026-11-20 12:30:00", 10.6, 60.0, 1010.0, 3.0, 200.0))  # bad timestamp
    rows.append((None, iso(NOON), 10.0, 60.0, 1010.0, 3.0, 200.0))  # no station: malformed
    for i in range(30):
        wiggle = 0.05 if i % 2 else -0.05
        temperature = (15.0 if i < 12 else 12.0) + wiggle
        rows.append(("B", iso(NOON + timedelta(minutes=i)), temperature, 70.0, 1005.0, 5.0, 270.0))
    return rows


def test_each_cleaning_rule_is_applied_once_in_order_and_counted(spark):
    raw, raw_pl = raw_frames(spark, junk_rows())
    clean, counts = osp.clean_observations(raw)

    assert counts == {
        "input_rows": 63,
        "malformed": 1,
        "bad_timestamp": 1,
        "missing_temperature": 2,
        "duplicate": 1,
        "outlier": 1,
        "sentinel_values": 2,
        "out_of_bounds_values": 2,
        "clean_rows": 57,
    }
    out = to_polars(clean)
    assert out.columns == list(osp.CLEAN_COLUMNS)
    assert out.height == 57
    assert out.select("station_id", "observed_at").equals(
        out.select("station_id", "observed_at").sort("station_id", "observed_at")
    ), "output is ordered by station and time, the late row included"
    a = out.filter(pl.col("station_id") == "A")
    minutes = [(t - NOON).seconds // 60 for t in a["observed_at"]]
    assert minutes == [i for i in range(30) if i not in (7, 8, 20)], "9 once, 11 back in place"
    by_minute = dict(zip(minutes, a.iter_rows(named=True), strict=True))
    assert by_minute[3]["humidity_pct"] is None and by_minute[3]["temperature_c"] == 10.06
    assert by_minute[5]["humidity_pct"] is None
    assert by_minute[12]["wind_deg"] is None and by_minute[12]["humidity_pct"] == 60.0
    b = out.filter(pl.col("station_id") == "B")
    assert b.height == 30, "a real 3 C front is weather, not an outlier"
    assert b["temperature_c"].round(2).to_list()[11:13] == [15.05, 11.95]
    assert out["observed_date"].unique().to_list() == [DAY]

    clean_pl, counts_pl = op.clean_observations(raw_pl)
    assert counts_pl == counts
    assert_frame_equal(clean_pl, out)


def test_timestamps_must_be_iso_8601_with_a_zone_and_are_stored_in_utc(spark):
    stamps = [
        "2026-11-20T12:00:00Z",
        "2026-11-20T13:01:00+01:00",  # 12:01 UTC
        "2026-11-20T00:10:00-00:30",  # 00:40 UTC, same UTC date
        "2026-11-19T23:50:00-00:30",  # 00:20 UTC on the 20th: the date is the UTC date
        "2026-11-20 12:02:00",  # no T
        "2026-11-20T12:03:00",  # no zone: local to whom?
        "2026-11-20T12:04:00.500Z",  # sub-second
        "2026-02-30T12:05:00Z",  # no such day
        "2026-11-20T24:00:00Z",
        "20/11/2026 12:06",
        None,
    ]
    rows = [("T", s, 10.0, 60.0, 1010.0, 3.0, 200.0) for s in stamps]
    raw, raw_pl = raw_frames(spark, rows)
    clean, counts = osp.clean_observations(raw)
    assert counts["bad_timestamp"] == 7
    assert counts["clean_rows"] == 4
    out = to_polars(clean)
    assert out["observed_at"].to_list() == [
        datetime(2026, 11, 20, 0, 20, tzinfo=UTC),
        datetime(2026, 11, 20, 0, 40, tzinfo=UTC),
        NOON,
        datetime(2026, 11, 20, 12, 1, tzinfo=UTC),
    ]
    assert out["observed_date"].unique().to_list() == [DAY]
    clean_pl, counts_pl = op.clean_observations(raw_pl)
    assert counts_pl == counts
    assert_frame_equal(clean_pl, out)


def test_malformed_csv_lines_are_counted_not_fatal_in_both_readers(spark, tmp_path):
    path = tmp_path / "readings.csv"
    path.write_text(
        ",".join(RAW_COLUMNS)
        + "\n"
        + "A,2026-11-20T12:00:00Z,10.0,60,1010,3,200\n"
        + "A,2026-11-20T12:01:00Z,abc,60,1010,3,200\n"  # not a number
        + "A,2026-11-20T12:02:00Z,10.0,60\n"  # too few fields
        + "A,2026-11-20T12:03:00Z,10.0,60,1010,3,200,7\n"  # too many fields
        + ",2026-11-20T12:04:00Z,10.0,60,1010,3,200\n"  # no station
        + "A,2026-11-20T12:05:00Z,,60,1010,3,200\n"  # no temperature
        + "A,2026-11-20T12:06:00Z,NaN,60,1010,3,200\n"  # NaN: out of bounds -> no temperature
        + "A,2026-11-20T12:07:00Z,10.1,,1010,3,200\n"  # no humidity: kept
        + "A,2026-11-20T12:08:00Z, 10.2 ,60,1010,3,200\n"  # padded number: Java trims, kept
        + "A,2026-11-20T12:09:00Z,nan,60,1010,3,200\n"  # not Java's spelling of NaN
    )
    clean, counts = osp.clean_observations(osp.read_raw_csv(spark, [str(path)]))
    assert counts["input_rows"] == 10
    assert counts["malformed"] == 5
    assert counts["missing_temperature"] == 2
    assert counts["out_of_bounds_values"] == 1
    assert counts["clean_rows"] == 3
    clean_pl, counts_pl = op.clean_observations(op.read_raw_csv([path]))
    assert counts_pl == counts
    assert_frame_equal(clean_pl, to_polars(clean))


def test_read_raw_csv_rejects_a_file_with_another_column_layout(spark, tmp_path):
    path = tmp_path / "readings.csv"
    path.write_text("observed_at,station_id\n2026-11-20T12:00:00Z,A\n")
    # Checked when the rows are parsed (a bare count() parses nothing).
    with pytest.raises(Exception, match=r"(?i)header|reading file"):
        osp.read_raw_csv(spark, [str(path)]).collect()
    with pytest.raises(ValueError, match="header"):
        op.read_raw_csv([path])


def test_aggregates_by_hand_with_bucket_boundaries(spark):
    rows = [
        ("A", NOON + timedelta(seconds=10), 10.0, 50.0, 1000.0, 2.0, 350.0),
        ("A", NOON + timedelta(minutes=5), 11.0, None, 1002.0, 4.0, 10.0),
        ("A", NOON + timedelta(minutes=14, seconds=59), 12.5, 70.0, 1004.0, None, None),
        ("A", NOON + timedelta(minutes=15), 20.0, 40.0, 1010.0, 1.0, 90.0),
    ]
    clean, clean_pl = clean_frame(spark, rows)
    quarter = to_polars(osp.aggregate(clean, 15))
    assert quarter["bucket_start"].to_list() == [NOON, NOON + timedelta(minutes=15)]
    first, second = quarter.iter_rows(named=True)
    assert first["temperature_mean"] == pytest.approx((10.0 + 11.0 + 12.5) / 3, abs=1e-12)
    assert (first["temperature_min"], first["temperature_max"]) == (10.0, 12.5)
    assert first["temperature_count"] == 3, "12:14:59 is still in the 12:00 quarter"
    assert first["humidity_mean"] == pytest.approx(60.0), "nulls are ignored, not zeros"
    assert first["pressure_mean"] == pytest.approx(1002.0)
    assert first["wind_speed_mean"] == pytest.approx(3.0)
    assert first["observed_date"] == DAY
    assert (second["temperature_count"], second["temperature_mean"]) == (1, 20.0)
    assert second["wind_deg_mean"] == pytest.approx(90.0)

    hourly = to_polars(osp.aggregate(clean, 60))
    assert hourly["bucket_start"].to_list() == [NOON]
    (hour,) = hourly.iter_rows(named=True)
    assert (hour["temperature_count"], hour["temperature_mean"]) == (4, pytest.approx(13.375))
    rad = math.radians
    expected = math.degrees(
        math.atan2(
            math.sin(rad(350)) + math.sin(rad(10)) + math.sin(rad(90)),
            math.cos(rad(350)) + math.cos(rad(10)) + math.cos(rad(90)),
        )
    )
    assert hour["wind_deg_mean"] == pytest.approx(expected, abs=1e-9)

    for minutes, frame in ((15, quarter), (60, hourly)):
        assert_frame_equal(op.aggregate(clean_pl, minutes), frame, abs_tol=1e-9)
    with pytest.raises(ValueError, match="divide a day"):
        osp.aggregate(clean, 7)


def circular_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_wind_direction_is_a_vector_mean(spark):
    pairs = {"north": (350.0, 10.0), "calm": (0.0, 180.0), "southeast": (90.0, 180.0)}
    pairs["just_west_of_north"] = (355.0, 356.0)
    rows = [
        (name, NOON + timedelta(minutes=m), 10.0, 60.0, 1010.0, 3.0, deg)
        for name, degrees in pairs.items()
        for m, deg in enumerate(degrees)
    ]
    clean, clean_pl = clean_frame(spark, rows)
    means = dict(
        to_polars(osp.aggregate(clean, 15)).select("station_id", "wind_deg_mean").iter_rows()
    )
    assert circular_gap(means["north"], 0.0) < 1e-9, "350 and 10 average to north, not 180"
    assert 0.0 <= means["north"] < 360.0
    assert means["calm"] is None, "opposite directions cancel: no mean direction"
    assert means["southeast"] == pytest.approx(135.0)
    assert means["just_west_of_north"] == pytest.approx(355.5)
    means_pl = dict(op.aggregate(clean_pl, 15).select("station_id", "wind_deg_mean").iter_rows())
    assert means_pl["calm"] is None
    for name in ("north", "southeast", "just_west_of_north"):
        assert circular_gap(means_pl[name], means[name]) < 1e-9


def test_hourly_features_look_up_lags_by_time_so_a_missing_hour_gives_null(spark):
    start = datetime(2026, 11, 20, tzinfo=UTC)
    hours = [h for h in range(31) if h != 5]
    rows = [
        ("A", start + timedelta(hours=h), (start + timedelta(hours=h)).date(), float(h))
        for h in hours
    ]
    rows.append(("B", start, DAY, 100.0))
    schema = (
        "station_id string, bucket_start timestamp, observed_date date, temperature_mean double"
    )
    features = to_polars(osp.hourly_features(spark.createDataFrame(rows, schema)))
    a = {
        (r["bucket_start"] - start) // timedelta(hours=1): r
        for r in features.filter(pl.col("station_id") == "A").iter_rows(named=True)
    }

    assert a[6]["temperature_lag_1h"] is None and a[6]["temperature_lag_2h"] == 4.0
    assert a[6]["temperature_delta_1h"] is None
    assert a[7]["temperature_lag_1h"] == 6.0 and a[7]["temperature_lag_2h"] is None
    assert a[7]["temperature_delta_1h"] == 1.0
    assert a[28]["temperature_lag_24h"] == 4.0 and a[28]["temperature_lag_23h"] is None
    assert a[28]["temperature_delta_24h"] == 24.0
    assert a[29]["temperature_lag_24h"] is None and a[29]["temperature_lag_23h"] == 6.0
    assert a[4]["target_temperature_next_hour"] is None
    assert a[3]["target_temperature_next_hour"] == 4.0
    assert a[30]["target_temperature_next_hour"] is None
    in_window = [h for h in hours if 0 <= h <= 23]
    assert a[23]["temperature_rolling_mean_24h"] == pytest.approx(sum(in_window) / len(in_window))
    in_window = [h for h in hours if 1 <= h <= 24]
    assert a[24]["temperature_rolling_mean_24h"] == pytest.approx(sum(in_window) / len(in_window))
    assert (a[6]["hour_sin"], a[6]["hour_cos"]) == (
        pytest.approx(1.0),
        pytest.approx(0.0, abs=1e-12),
    )
    assert a[24]["hour_sin"] == pytest.approx(0.0, abs=1e-12) and a[24][
        "hour_cos"
    ] == pytest.approx(1.0)
    (b,) = features.filter(pl.col("station_id") == "B").iter_rows(named=True)
    assert b["temperature_lag_1h"] is None and b["target_temperature_next_hour"] is None
    assert b["temperature_rolling_mean_24h"] == 100.0, "stations never leak into each other"


def test_rewriting_one_date_partition_keeps_the_others_and_does_not_duplicate(spark, tmp_path):
    path = str(tmp_path / "clean")
    nov21 = NOON + timedelta(days=1)
    first = [
        ("A", NOON + timedelta(minutes=m), 10.0 + m, 60.0, 1010.0, 3.0, 200.0) for m in range(3)
    ]
    first += [
        ("A", nov21 + timedelta(minutes=m), 20.0 + m, 60.0, 1010.0, 3.0, 200.0) for m in range(3)
    ]
    osp.write_partitioned_parquet(
        clean_frame(spark, first)[0], path, "observed_date", sort_by=("station_id", "observed_at")
    )

    redo = [
        ("A", NOON + timedelta(minutes=m), 30.0 + m, 60.0, 1010.0, 3.0, 200.0) for m in range(2)
    ]
    for _ in range(2):  # the same re-run twice: still once
        osp.write_partitioned_parquet(
            clean_frame(spark, redo)[0],
            path,
            "observed_date",
            sort_by=("station_id", "observed_at"),
        )

    back = pl.read_parquet(f"{path}/**/*.parquet", hive_partitioning=True).sort("observed_at")
    assert back.schema["observed_at"] == pl.Datetime("us", "UTC"), "UTC instants, not INT96"
    assert back.filter(pl.col("observed_date") == DAY)["temperature_c"].to_list() == [30.0, 31.0]
    assert back.filter(pl.col("observed_date") == DAY + timedelta(days=1))[
        "temperature_c"
    ].to_list() == [20.0, 21.0, 22.0]
    assert len(list((tmp_path / "clean" / f"observed_date={DAY}").glob("*.parquet"))) == 1
    assert spark.conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"


def test_spark_and_polars_agree_on_a_simulated_day_and_catch_the_labelled_junk(spark, tmp_path):
    from weather_assets.locations import Location
    from weather_assets.stations.feed import to_csv_bytes
    from weather_assets.stations.simulator import raw_readings

    places = [
        Location("utrecht", "Utrecht", 52.08, 5.12),
        Location("madrid", "Madrid", 40.42, -3.70),
    ]
    labelled = raw_readings(places, DAY, interval_s=10.0, label_junk=True)
    path = tmp_path / "readings.csv"
    path.write_bytes(to_csv_bytes(labelled.drop("junk_kind")))

    clean, counts = osp.clean_observations(osp.read_raw_csv(spark, [str(path)]))
    clean_pl, counts_pl = op.clean_observations(op.read_raw_csv([path]))
    assert counts_pl == counts
    assert_frame_equal(clean_pl, to_polars(clean))
    for minutes in (15, 60):
        spark_agg = to_polars(osp.aggregate(clean, minutes))
        polars_agg = op.aggregate(clean_pl, minutes)
        assert_frame_equal(
            polars_agg.drop("wind_deg_mean"),
            spark_agg.drop("wind_deg_mean"),
            abs_tol=1e-9,
            rel_tol=0,
        )
        gaps = [
            circular_gap(a, b)
            for a, b in zip(polars_agg["wind_deg_mean"], spark_agg["wind_deg_mean"], strict=True)
        ]
        assert max(gaps) < 1e-9

    # The simulator labels its junk: every kind must land where the rules say.
    kinds = dict(labelled["junk_kind"].value_counts().iter_rows())
    assert counts["input_rows"] == labelled.height
    assert counts["duplicate"] == kinds["duplicate"]
    assert counts["sentinel_values"] == kinds["sentinel"]
    assert counts["out_of_bounds_values"] == kinds["absurd"]
    assert counts["outlier"] == kinds["spike"], "every 8-20 C spike caught, no real reading lost"
