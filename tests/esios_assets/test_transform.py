"""Indicator 460 payload -> polars frame: DST days, formats, completeness, errors."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime

import polars as pl
import pytest

from esios_assets.client import EsiosResource
from esios_assets.simulator import MADRID, indicator_460_payload
from esios_assets.transform import (
    EXPORT_COLUMNS,
    demand_forecast_frame,
    expected_hours,
    export_frame,
    month_bounds_local,
    month_bounds_utc,
    published_end_utc,
)
from resources.source import SourceConfig

WALL_TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


def day_payload(day: date) -> dict:
    start = datetime(day.year, day.month, day.day, tzinfo=MADRID)
    end = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=MADRID)
    return indicator_460_payload(start, end, seed=3)


def minimal(values: list, **indicator) -> dict:
    return {"indicator": {"name": "Previsión", "id": 460, "values": values, **indicator}}


def test_spring_dst_day_has_23_hours_without_2am():
    frame = demand_forecast_frame(day_payload(date(2017, 3, 26)))
    assert frame.height == 23
    assert "2017-03-26 02:00:00" not in frame["datetime"].to_list()
    assert frame["utc_offset_minutes"].unique().sort().to_list() == [60, 120]


def test_autumn_dst_day_has_25_hours_and_two_distinct_2am_rows():
    frame = demand_forecast_frame(day_payload(date(2017, 10, 29)))
    assert frame.height == 25
    twice = frame.filter(pl.col("datetime") == "2017-10-29 02:00:00")
    assert twice.height == 2
    assert twice["datetime_utc"].to_list() == [
        datetime(2017, 10, 29, 0, 0),
        datetime(2017, 10, 29, 1, 0),
    ]
    assert twice["utc_offset_minutes"].to_list() == [120, 60]
    assert frame["datetime_utc"].is_sorted() and frame["datetime_utc"].n_unique() == 25


def test_columns_types_and_formats():
    frame = demand_forecast_frame(day_payload(date(2018, 1, 15)))
    assert frame.columns == [*EXPORT_COLUMNS, "datetime_utc", "utc_offset_minutes"]
    assert frame.schema == {
        "name": pl.String,
        "id": pl.Int64,
        "datetime": pl.String,
        "demand_forecast": pl.Float64,
        "update_timestamp": pl.String,
        "datetime_utc": pl.Datetime("us"),
        "utc_offset_minutes": pl.Int32,
    }
    assert frame["name"].unique().to_list() == [
        "Previsión diaria de la demanda eléctrica peninsular"
    ]
    assert frame["id"].unique().to_list() == [460]
    assert frame["datetime"].str.contains(WALL_TIME).all()
    assert frame["update_timestamp"].str.contains(WALL_TIME).all()
    # Local wall time as published: the first hour is local midnight, 23:00 UTC the day before.
    assert frame.row(0, named=True)["datetime"] == "2018-01-15 00:00:00"
    assert frame.row(0, named=True)["datetime_utc"] == datetime(2018, 1, 14, 23)
    assert export_frame(frame).columns == list(EXPORT_COLUMNS)


def test_update_timestamp_is_the_local_wall_time_of_values_updated_at():
    payload = minimal(
        [{"value": 1.0, "datetime_utc": "2016-12-31T23:00:00Z"}],
        values_updated_at="2018-12-31T23:55:13.000+01:00",
    )
    row = demand_forecast_frame(payload).row(0, named=True)
    assert row["update_timestamp"] == "2018-12-31 23:55:13"
    # No `datetime` in the value: derived from datetime_utc in Europe/Madrid.
    assert row["datetime"] == "2017-01-01 00:00:00" and row["utc_offset_minutes"] == 60


def test_rows_are_sorted_by_utc_instant():
    values = [
        {"value": 2.0, "datetime_utc": "2017-01-01T00:00:00Z"},
        {"value": 1.0, "datetime_utc": "2016-12-31T23:00:00Z"},
    ]
    assert demand_forecast_frame(minimal(values))["demand_forecast"].to_list() == [1.0, 2.0]


def test_empty_values_give_an_empty_frame_with_the_schema():
    frame = demand_forecast_frame(minimal([]))
    assert frame.height == 0 and frame.columns[:5] == list(EXPORT_COLUMNS)


def test_2017_and_2018_through_the_simulator_are_complete():
    esios = EsiosResource(source=SourceConfig(seed=7))
    months = [date(year, month, 1) for year in (2017, 2018) for month in range(1, 13)]
    frames = []
    for month in months:
        frame = demand_forecast_frame(esios.fetch_month(month))
        start, end = month_bounds_utc(month)
        assert frame.height == expected_hours(month), month
        assert frame["datetime_utc"].min() == start and frame["datetime_utc"].max() < end
        frames.append(frame)
    everything = pl.concat(frames)
    assert everything.height == 17_520
    assert everything["datetime_utc"].n_unique() == 17_520
    assert everything["datetime_utc"].is_sorted()


def test_expected_hours_and_month_bounds():
    assert [expected_hours(date(2017, m, 1)) for m in (1, 2, 3, 4, 10, 12)] == [
        744,
        672,
        743,
        720,
        745,
        744,
    ]
    assert expected_hours(date(2020, 2, 1)) == 696
    assert month_bounds_utc(date(2017, 1, 1)) == (
        datetime(2016, 12, 31, 23),
        datetime(2017, 1, 31, 23),
    )
    assert month_bounds_utc(date(2017, 10, 1)) == (
        datetime(2017, 9, 30, 22),
        datetime(2017, 10, 31, 23),
    )
    with pytest.raises(ValueError, match="first day of a month"):
        expected_hours(date(2017, 1, 2))


GOOD = {
    "value": 24123.0,
    "datetime": "2017-01-01T00:00:00.000+01:00",
    "datetime_utc": "2016-12-31T23:00:00Z",
    "tz_time": "2016-12-31T23:00:00.000Z",
    "geo_id": 8741,
    "geo_name": "Península",
}


def with_value(**changes) -> dict:
    value = {**copy.deepcopy(GOOD), **changes}
    return minimal([value], values_updated_at="2018-12-31T23:55:13.000+01:00")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "no 'indicator' object"),
        ({"indicator": None}, "no 'indicator' object"),
        ({"indicator": {"name": "x", "id": 460}}, r"no 'indicator.values' list"),
        (minimal(None), r"no 'indicator.values' list"),
        (with_value(datetime_utc=None), r"values\[0\] has no datetime_utc"),
        (with_value(value="24123"), r"values\[0\] .* non-numeric value: '24123'"),
        (with_value(value=None), "non-numeric value: None"),
        (with_value(value=True), "non-numeric value: True"),
        (with_value(value=float("nan")), "non-numeric value: nan"),
        (with_value(datetime_utc="yesterday"), "datetime_utc is not an ISO 8601 timestamp"),
        (with_value(datetime_utc="2016-12-31T23:00:00"), "has no UTC offset"),
        (with_value(datetime="2017-01-01T01:00:00.000+01:00"), "are different instants"),
        (minimal([GOOD], id="460"), "indicator.id must be an integer"),
        ({"indicator": {"id": 460, "values": []}}, "indicator.name"),
    ],
)
def test_bad_payloads_raise_a_clear_value_error(payload, message):
    with pytest.raises(ValueError, match=message):
        demand_forecast_frame(payload)


def test_published_end_of_the_month_in_progress_is_the_end_of_today_in_spain():
    december = date(2026, 12, 1)
    # 23:30 UTC on 5 December is 00:30 on the 6th in Madrid: the 6th must be out.
    late = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    assert published_end_utc(december, late) == datetime(2026, 12, 6, 23)
    # Over: the whole month; the last day: the month's end, not beyond it.
    assert published_end_utc(date(2026, 11, 1), late) == month_bounds_utc(date(2026, 11, 1))[1]
    last_day = datetime(2026, 12, 31, 12, tzinfo=UTC)
    assert published_end_utc(december, last_day) == month_bounds_utc(december)[1]
    # Local wall-time window of October 2017: both 02:00 hours of the 29th inside it.
    assert month_bounds_local(date(2017, 10, 1)) == (datetime(2017, 10, 1), datetime(2017, 11, 1))
