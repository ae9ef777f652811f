"""The station feed: simulated day/hour slices agree; live mode maps One Call timemachine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.stations.feed import StationFeed, timemachine_rows

OFFICE = Location("office", "Office", 52.084516, 5.115539)
DAY = datetime(2026, 11, 20, tzinfo=UTC)


def test_an_hour_is_the_matching_slice_of_its_day():
    feed = StationFeed(stations="office", interval_s=30.0)
    day = feed.readings([OFFICE], DAY, DAY + timedelta(days=1))
    hour = feed.readings([OFFICE], DAY + timedelta(hours=5), DAY + timedelta(hours=6))
    stamp = pl.col("observed_at").str.to_datetime(
        "%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False
    )
    expected = day.filter((stamp >= DAY + timedelta(hours=5)) & (stamp < DAY + timedelta(hours=6)))
    assert hour.equals(expected) and hour.height > 100


def test_unknown_stations_are_named():
    with pytest.raises(dg.Failure, match="nowhere"):
        StationFeed(stations="office,nowhere").select([OFFICE])


def test_timemachine_rows_map_to_the_raw_columns():
    payload = {
        "lat": 52.0845,
        "data": [
            {
                "dt": 1763640000,
                "temp": 7.5,
                "humidity": 81,
                "pressure": 1012,
                "wind_speed": 3.1,
                "wind_deg": 250,
            }
        ],
    }
    assert timemachine_rows(payload, "office") == [
        {
            "station_id": "office",
            "observed_at": "2025-11-20T12:00:00Z",
            "temperature_c": 7.5,
            "humidity_pct": 81,
            "pressure_hpa": 1012,
            "wind_speed_ms": 3.1,
            "wind_deg": 250,
        }
    ]


def test_live_mode_calls_timemachine_hourly(httpserver):
    start = DAY + timedelta(hours=3)
    for hour in range(2):
        dt = int((start + timedelta(hours=hour)).timestamp())
        httpserver.expect_ordered_request(
            "/data/3.0/onecall/timemachine",
            query_string={
                "lat": "52.084516",
                "lon": "5.115539",
                "dt": str(dt),
                "units": "metric",
                "appid": "key",
            },
        ).respond_with_json(
            {
                "data": [
                    {
                        "dt": dt,
                        "temp": 5.0 + hour,
                        "humidity": 90,
                        "pressure": 1000,
                        "wind_speed": 2,
                        "wind_deg": 10,
                    }
                ]
            }
        )
    feed = StationFeed(
        source=SourceConfig(mode="live"),
        api_key="key",
        base_url=httpserver.url_for("/").rstrip("/"),
    )
    frame = feed.readings([OFFICE], start, start + timedelta(hours=2))
    assert frame["temperature_c"].to_list() == [5.0, 6.0]
    assert frame["observed_at"].to_list() == ["2026-11-20T03:00:00Z", "2026-11-20T04:00:00Z"]


def test_live_mode_without_a_key_is_named():
    with pytest.raises(dg.Failure, match="OPENWEATHERMAP_API_KEY"):
        StationFeed(source=SourceConfig(mode="live")).readings(
            [OFFICE], DAY, DAY + timedelta(hours=1)
        )
