from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from weather_assets.locations import Location
from weather_assets.rain.transforms import (
    PayloadError,
    forecasts_frame,
    minutely_rows,
    next_hour_precipitation,
    stale_minute_error,
    wettest_markdown,
)

MINUTE = datetime(2026, 11, 22, 16, 5, tzinfo=UTC)
T0 = int(MINUTE.timestamp())
# What One Call 3.0 answers to a call made during MINUTE: 61 entries from the next full minute.
FIRST = T0 + 60
HERE = Location("here", "Here", 52.0, 5.0)
THERE = Location("there", "There", 10.0, 20.0)


def payload(rates, start=FIRST):
    return {
        "lat": 52.0,
        "lon": 5.0,
        "minutely": [{"dt": start + 60 * i, "precipitation": r} for i, r in enumerate(rates)],
    }


def totals(*pairs, minute=MINUTE):
    frame = forecasts_frame([(loc, minutely_rows(p, loc.location_id)) for loc, p in pairs], minute)
    return next_hour_precipitation(frame)


def test_rates_are_mm_per_hour_so_an_hour_of_6_mm_h_is_6_mm():
    out = totals((HERE, payload([6.0] * 61)))
    assert out["next_hour_precipitation_mm"].to_list() == [pytest.approx(6.0)]
    assert out["minutes_covered"].to_list() == [60]


def test_the_61st_entry_is_outside_the_window():
    out = totals((HERE, payload([0.0] * 60 + [600.0])))
    assert out["next_hour_precipitation_mm"][0] == 0.0
    assert out["minutes_covered"][0] == 60


def test_window_edges_start_exclusive_end_inclusive():
    # Entries at the call's own minute and one minute after the window's end do not count.
    p = payload([120.0] + [0.0] * 60 + [120.0], start=T0)
    out = totals((HERE, p))
    assert out["next_hour_precipitation_mm"][0] == 0.0
    assert out["minutes_covered"][0] == 60
    assert out["window_start"][0] == MINUTE.replace(tzinfo=None)
    assert out["window_end"][0] == (MINUTE + timedelta(hours=1)).replace(tzinfo=None)


def test_the_minute_at_window_end_counts_and_the_call_minute_does_not():
    # 60 mm/h at M (the call's minute) and at M + 60 min (window_end): only the latter counts.
    p = payload([60.0] + [0.0] * 59 + [60.0], start=T0)
    out = totals((HERE, p))
    assert out["next_hour_precipitation_mm"][0] == pytest.approx(1.0)
    assert out["minutes_covered"][0] == 60


def test_a_late_fetch_covers_fewer_minutes():
    # Fetched a minute late, the answer starts at M + 2 min: M + 1 min is missing.
    out = totals((HERE, payload([60.0] * 61, start=FIRST + 60)))
    assert out["minutes_covered"][0] == 59
    assert out["next_hour_precipitation_mm"][0] == pytest.approx(59.0)


def test_missing_minutely_gives_null_total_not_zero_and_keeps_the_coordinate():
    no_nowcast = {"lat": 10.0, "lon": 20.0, "timezone": "Etc/GMT-1", "timezone_offset": 3600}
    frame = forecasts_frame(
        [
            (HERE, minutely_rows(payload([1.0] * 61), "here")),
            (THERE, minutely_rows(no_nowcast, "there")),
        ],
        MINUTE,
    )
    there = frame.filter(pl.col("location_id") == "there")
    assert there.height == 1 and there["forecast_at"][0] is None
    out = next_hour_precipitation(frame)
    assert out["location_id"].to_list() == ["here", "there"]
    assert out.filter(pl.col("location_id") == "there").row(0, named=True) == {
        "location_id": "there",
        "lat": 10.0,
        "lon": 20.0,
        "window_start": MINUTE.replace(tzinfo=None),
        "window_end": (MINUTE + timedelta(hours=1)).replace(tzinfo=None),
        "next_hour_precipitation_mm": None,
        "minutes_covered": 0,
    }


def test_null_rates_are_not_counted_as_covered():
    out = totals((HERE, payload([None] * 30 + [12.0] * 31)))
    assert out["minutes_covered"][0] == 30
    assert out["next_hour_precipitation_mm"][0] == pytest.approx(30 * 12.0 / 60)


def test_forecast_rows_are_one_per_entry_with_utc_minutes():
    frame = forecasts_frame([(HERE, minutely_rows(payload([0.5] * 61), "here"))], MINUTE)
    assert frame.height == 61
    assert frame["forecast_at"][0] == (MINUTE + timedelta(minutes=1)).replace(tzinfo=None)
    assert frame["forecast_at"][60] == (MINUTE + timedelta(minutes=61)).replace(tzinfo=None)
    assert frame["fetched_minute"].unique().to_list() == [MINUTE.replace(tzinfo=None)]
    assert frame.schema["precipitation_mm_per_h"] == pl.Float64


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"minutely": "rain"}, "not a list"),
        ({"minutely": [{"precipitation": 1}]}, r"minutely\[0\] has no 'dt'"),
        ({"minutely": [{"dt": "noon", "precipitation": 1}]}, "not unix seconds"),
        ({"minutely": [{"dt": 1, "precipitation": "lots"}]}, "is not a number"),
    ],
)
def test_malformed_minutely_is_rejected_with_the_location(bad, message):
    with pytest.raises(PayloadError, match=message):
        minutely_rows(bad, "here")


def test_several_minutes_in_one_frame_are_summed_separately():
    later = MINUTE + timedelta(minutes=1)
    frame = pl.concat(
        [
            forecasts_frame([(HERE, minutely_rows(payload([6.0] * 61), "here"))], MINUTE),
            forecasts_frame(
                [(HERE, minutely_rows(payload([12.0] * 61, start=FIRST + 60), "here"))], later
            ),
        ]
    )
    out = next_hour_precipitation(frame)
    assert out["next_hour_precipitation_mm"].to_list() == [pytest.approx(6.0), pytest.approx(12.0)]


@pytest.mark.parametrize(("age", "ok"), [(0, True), (1, True), (2, True), (3, False), (-1, False)])
def test_live_mode_refuses_stale_minutes(age, ok):
    now = MINUTE + timedelta(minutes=age, seconds=30)
    error = stale_minute_error(MINUTE, now)
    assert (error is None) == ok
    if age == 3:
        assert "3 minutes old" in error and "SOURCE_MODE=simulated" in error


def test_wettest_markdown_orders_by_total():
    out = totals((HERE, payload([6.0] * 61)), (THERE, payload([12.0] * 61)))
    table = wettest_markdown(out, {"here": "Here", "there": "There"})
    assert table.index("There") < table.index("Here")
    assert "| There | 10.0000 | 20.0000 | 12.00 | 60 |" in table
