"""Spark and polars compared rule by rule: each cleaning step of ``etl_spark.CLEANING_STEPS``
and its ``etl_polars`` twin get the same input state (Spark's state after the steps before)
and must give the same rows and values, so a drift fails at the rule that drifted instead of
only showing in the final counts.

The raw file exercises every rule, with readings on both sides of each threshold: bounds at and
just past their limits, spikes just over the floor, a reading just inside and one just past a
wide bucket's MAD threshold, a real 3 C front, and duplicates whose copies differ.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from weather_assets.observations import etl_polars as op
from weather_assets.observations import etl_spark as osp

NOON = datetime(2026, 11, 20, 12, tzinfo=UTC)
STEPS = [step.__name__ for step in osp.CLEANING_STEPS]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def line(station: str, observed_at: str, *values: object) -> str:
    return ",".join([station, observed_at, *("" if v is None else str(v) for v in values)])


def reading(station: str, minute: float, temperature: object, **changes: object) -> str:
    values = {"humidity_pct": 60.0, "pressure_hpa": 1010.0, "wind_speed_ms": 3.0, "wind_deg": 200.0}
    values.update(changes)
    return line(station, iso(NOON + timedelta(minutes=minute)), temperature, *values.values())


def quiet(minute: int) -> float:
    """Station A's readings: 10.00 / 10.02 alternating, a bucket MAD of 0.01 (floor applies)."""
    return 10.0 + 0.02 * (minute % 2)


def raw_lines() -> list[str]:
    a = {m: reading("A", m, quiet(m)) for m in range(30)}
    a[3] = reading("A", 3, quiet(3), humidity_pct=-999)  # sentinel: field nulled, row kept
    a[4] = reading("A", 4, quiet(4), pressure_hpa=-9999)  # the other sentinel
    a[5] = reading("A", 5, -999)  # sentinel temperature -> missing_temperature
    a[6] = reading("A", 6, quiet(6), humidity_pct=100.1)  # just out of bounds
    a[7] = reading("A", 7, quiet(7), humidity_pct=100.0)  # bounds are inclusive
    a[8] = reading("A", 8, quiet(8), wind_deg=360.5)
    a[9] = reading("A", 9, quiet(9), wind_speed_ms=-0.1)
    a[10] = reading("A", 10, quiet(10), pressure_hpa=869.9)
    a[11] = reading("A", 11, "NaN")  # NaN is out of bounds -> missing_temperature
    a[12] = reading("A", 12, None)  # missing_temperature
    a[13] = reading("A", 13, quiet(13) + 8.0)  # the smallest spike: outlier
    a[20] = reading("A", 20, quiet(20) + 5.5)  # just over the 5 C floor: outlier
    a[27] = reading("A", 27, quiet(27) + 4.5)  # just under it: kept
    late = a.pop(25)
    rows = []
    for m, row in a.items():
        rows.append(row)
        if m == 1:
            rows.append(row)  # byte-identical duplicate
        if m == 2:
            rows.append(reading("A", 2, quiet(2), humidity_pct=None))  # the copy without humidity
        if m == 14:
            rows.append(reading("A", 14, quiet(14) + 0.3))  # the higher copy goes
            rows.append(reading("A", 14, quiet(14) + 0.3))  # three rows, one key
        if m == 15:
            rows.append(reading("A", 15, None))  # rejected earlier: the original is no duplicate
        if m == 16:
            rows.append(reading("A", 16, quiet(16), pressure_hpa="abc"))  # malformed copy
    # B: a real, sudden 3 C front; 3 of its bucket's 15 readings on the new level.
    for m in range(15):
        rows.append(reading("B", m, (15.0 if m < 12 else 12.0) + (0.05 if m % 2 else -0.05)))
    # C: wide buckets (median 10.5, MAD 2.5: threshold 5 * 1.4826 * 2.5 = 18.53); a reading
    # 18.0 off is kept, one 19.0 off (next bucket, same spread) is an outlier.
    for bucket, top in ((0, 28.5), (15, 29.5)):
        for i, t in enumerate([6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, top]):
            rows.append(reading("C", bucket + i, t))
    # D: two readings 20 C apart; fewer than 3 in a bucket never make an outlier.
    rows += [reading("D", 0, 10.0), reading("D", 1, 30.0)]
    # H: one reading per bucket at and just past each bound.
    edges = [
        (60.0, {}),
        (-60.0, {}),
        (60.5, {}),
        (-60.5, {}),
        (10.0, {"humidity_pct": 0.0, "wind_speed_ms": 75.0, "wind_deg": 360.0}),
        (10.0, {"humidity_pct": -0.1, "wind_speed_ms": 75.1, "wind_deg": -0.1}),
        (10.0, {"pressure_hpa": 1085.0}),
        (10.0, {"pressure_hpa": 1085.1, "humidity_pct": "Infinity"}),
        (10.0, {"pressure_hpa": 870.0, "wind_speed_ms": 0.0, "wind_deg": 0.0}),
    ]
    rows += [reading("H", 15 * i, t, **changes) for i, (t, changes) in enumerate(edges)]
    # T: timestamps, good and bad.
    values = (10.0, 60.0, 1010.0, 3.0, 200.0)
    rows += [
        line("T", "2026-11-20T13:03:30+01:00", *values),  # 12:03:30 UTC
        line("T", "2026-11-19T23:50:00-00:30", *values),  # 00:20 UTC on the 20th
        line("T", "2026-11-20 12:01:30", *values),
        line("T", "2026-11-20T12:02:30.5Z", *values),
        line("T", "2026-02-30T12:00:00Z", *values),
        line("T", "2026-11-20T24:00:00Z", *values),
        line("T", "2026-11-20T12:03:00", *values),
        line("T", "", *values),
        line("T", "2026-11-20 12:04:00", 10.0, -999, 1010.0, 3.0, 200.0),  # never reaches rule 2
    ]
    # Malformed lines.
    rows += [
        line("A", "2026-11-20T12:00:30Z", "abc", 60, 1010, 3, 200),
        line("A", "2026-11-20T12:00:40Z", 10.0, 60),
        line("A", "2026-11-20T12:00:45Z", 10.0, 60, 1010, 3, 200, 7),
        line("", "2026-11-20T12:00:50Z", *values),
        line(" ", "2026-11-20T12:00:55Z", *values),
        line("", "not a time", *values),  # malformed first, then a bad timestamp
        line("A", "2026-11-20T12:00:58Z", "abc", -999, 1010, 3, 200),  # no sentinel counted
    ]
    rows.append(late)  # out of order: arrives last
    return rows


# What each step does to this input, by hand: rows newly rejected, or fields nulled.
EFFECTS = {
    "_flag_malformed": 8,  # 7 malformed lines and the malformed copy of A 12:16
    "_parse_timestamp": 7,
    "_null_sentinels": 3,  # A 12:03, 12:04, 12:05 (T's and the malformed line's not counted)
    "_null_out_of_bounds": 12,  # A: 5 (one of them NaN); H: 2 + 3 + 2
    "_flag_missing_temperature": 6,  # A 12:05, 12:11, 12:12, the copy of 12:15; H 60.5, -60.5
    "_add_bucket": 0,
    "_flag_duplicates": 4,  # A 12:01, 12:02 (no humidity), 12:14 twice
    "_flag_outliers": 3,  # A 12:13 and 12:20, C's 29.5
}
# Which rows the window rules reject, as (station, time, temperature, humidity).
PICKED = {
    "_flag_duplicates": (
        "duplicate",
        [
            ("A", "12:01:00", 10.02, 60.0),
            ("A", "12:02:00", 10.0, None),  # the complete copy stays
            ("A", "12:14:00", 10.3, 60.0),  # the lowest temperature stays
            ("A", "12:14:00", 10.3, 60.0),
        ],
    ),
    "_flag_outliers": (
        "outlier",
        [
            ("A", "12:13:00", 18.02, 60.0),
            ("A", "12:20:00", 15.5, 60.0),
            ("C", "12:24:00", 29.5, 60.0),
        ],
    ),
}
EXPECTED_COUNTS = {
    "input_rows": 98,
    "malformed": 8,
    "bad_timestamp": 7,
    "missing_temperature": 6,
    "duplicate": 4,
    "outlier": 3,
    "sentinel_values": 3,
    "out_of_bounds_values": 12,
    "clean_rows": 70,
}


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pairwise") / "readings.csv"
    path.write_text("\n".join([",".join(osp.RAW_COLUMNS), *raw_lines()]) + "\n")
    return str(path)


def to_polars(df) -> pl.DataFrame:
    return pl.from_arrow(df.toArrow())


def effect(step: str, before: pl.DataFrame, after: pl.DataFrame) -> int:
    """Rows a rejecting step rejected, or fields a fixing step nulled."""
    if step in ("_null_sentinels", "_null_out_of_bounds"):
        column = osp.SENTINEL_COUNT if step == "_null_sentinels" else osp.OUT_OF_BOUNDS_COUNT
        return int(after[column].sum())
    if osp.REASON not in before.columns:
        return after[osp.REASON].is_not_null().sum()
    return after[osp.REASON].is_not_null().sum() - before[osp.REASON].is_not_null().sum()


def test_both_engines_have_the_same_steps_in_the_same_order():
    assert [step.__name__ for step in op.CLEANING_STEPS] == STEPS
    assert list(EFFECTS) == STEPS


@pytest.mark.parametrize("step", STEPS)
def test_each_cleaning_step_gives_the_same_rows_in_both_engines(spark, raw_csv, step):
    index = STEPS.index(step)
    state = osp.read_raw_csv(spark, [raw_csv])
    for earlier in osp.CLEANING_STEPS[:index]:
        state = earlier(state)
    before = to_polars(state)

    spark_after = to_polars(osp.CLEANING_STEPS[index](state))
    polars_after = getattr(op, step)(before.lazy()).collect()

    assert polars_after.columns == spark_after.columns
    # Row order is the engines' own business until clean_observations sorts.
    order = spark_after.columns
    assert_frame_equal(
        polars_after.sort(order, nulls_last=True), spark_after.sort(order, nulls_last=True)
    )
    assert effect(step, before, spark_after) == EFFECTS[step], "the input exercises the rule"
    if step in PICKED:
        reason, expected = PICKED[step]
        picked = spark_after.filter(pl.col(osp.REASON) == reason).sort(order, nulls_last=True)
        assert [
            (r["station_id"], f"{r['observed_at']:%H:%M:%S}", r["temperature_c"], r["humidity_pct"])
            for r in picked.iter_rows(named=True)
        ] == expected


def test_both_readers_give_rule_0_the_same_raw_frame(spark, raw_csv):
    assert_frame_equal(op.read_raw_csv([raw_csv]), to_polars(osp.read_raw_csv(spark, [raw_csv])))


def test_whole_pipeline_on_the_same_input(spark, raw_csv):
    clean, counts = osp.clean_observations(osp.read_raw_csv(spark, [raw_csv]))
    clean_pl, counts_pl = op.clean_observations(op.read_raw_csv([raw_csv]))
    assert counts == EXPECTED_COUNTS
    assert counts_pl == counts
    assert_frame_equal(clean_pl, to_polars(clean))
