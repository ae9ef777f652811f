"""Live mode's minute polls: One Call `current` mapping, the poll job and sensor, and how
`readings` combines stored polls with timemachine for the hours without them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from resources import clock
from resources.object_store import ObjectStore
from resources.source import SourceConfig
from sensors.station_polls import station_poll_sensor
from weather_assets.locations import CoordinateRegistry, Location
from weather_assets.stations.feed import (
    RAW_SCHEMA,
    StationFeed,
    current_rows,
    hours_without_polls,
    merge_polls_and_history,
)
from weather_assets.stations.poll_store import poll_key, read_polls, to_json_lines
from weather_assets.stations.polls import station_poll_job

OFFICE = Location("office", "Office", 52.084516, 5.115539)
AMSTERDAM = Location("amsterdam", "Amsterdam", 52.370216, 4.895168)
DAY = datetime(2026, 11, 20, tzinfo=UTC)


def onecall_current(dt: datetime, temp: float) -> dict:
    return {
        "lat": 52.0845,
        "lon": 5.1155,
        "timezone": "Europe/Amsterdam",
        "current": {
            "dt": int(dt.timestamp()),
            "temp": temp,
            "humidity": 81,
            "pressure": 1012,
            "wind_speed": 3.1,
            "wind_deg": 250,
            "clouds": 75,
        },
    }


def current_query(station: Location) -> dict[str, str]:
    return {
        "lat": f"{station.lat:.6f}",
        "lon": f"{station.lon:.6f}",
        "exclude": "minutely,hourly,daily,alerts",
        "units": "metric",
        "appid": "key",
    }


def live_feed(httpserver, stations: str = "office") -> StationFeed:
    return StationFeed(
        source=SourceConfig(mode="live"),
        stations=stations,
        api_key="key",
        base_url=httpserver.url_for("/").rstrip("/"),
    )


def poll_row(station_id: str, at: datetime, temp: float) -> dict:
    return {
        "station_id": station_id,
        "observed_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "temperature_c": temp,
        "humidity_pct": 80.0,
        "pressure_hpa": 1010.0,
        "wind_speed_ms": 2.0,
        "wind_deg": 180.0,
    }


def polls_frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=RAW_SCHEMA)


def test_current_rows_map_to_the_raw_columns():
    payload = onecall_current(datetime(2025, 11, 20, 12, 3, 27, tzinfo=UTC), 7.5)
    assert current_rows(payload, "office") == [
        {
            "station_id": "office",
            "observed_at": "2025-11-20T12:03:27Z",
            "temperature_c": 7.5,
            "humidity_pct": 81,
            "pressure_hpa": 1012,
            "wind_speed_ms": 3.1,
            "wind_deg": 250,
        }
    ]
    assert current_rows({"lat": 1.0}, "office") == []  # no `current` in the answer


def test_poll_current_calls_onecall_current_once_per_station(httpserver):
    at = DAY + timedelta(hours=9, minutes=4, seconds=12)
    for station, temp in ((OFFICE, 6.5), (AMSTERDAM, 5.0)):
        httpserver.expect_ordered_request(
            "/data/3.0/onecall", method="GET", query_string=current_query(station)
        ).respond_with_json(onecall_current(at, temp))
    frame = live_feed(httpserver, "office,amsterdam").poll_current([OFFICE, AMSTERDAM])
    httpserver.check_assertions()
    assert len(httpserver.log) == 2
    assert frame.schema == pl.Schema(RAW_SCHEMA)
    assert frame["station_id"].to_list() == ["office", "amsterdam"]
    assert frame["temperature_c"].to_list() == [6.5, 5.0]
    assert frame["observed_at"].to_list() == ["2026-11-20T09:04:12Z"] * 2


def test_poll_current_is_live_only():
    with pytest.raises(dg.Failure, match="live-only"):
        StationFeed().poll_current([OFFICE])


def test_poll_current_without_a_key_is_named():
    with pytest.raises(dg.Failure, match="OPENWEATHERMAP_API_KEY"):
        StationFeed(source=SourceConfig(mode="live")).poll_current([OFFICE])


def test_the_poll_job_writes_the_minute_as_json_lines(httpserver, platform_env, monkeypatch):
    now = datetime(2026, 11, 22, 16, 5, 41, tzinfo=UTC)
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    for station, temp in ((OFFICE, 6.5), (AMSTERDAM, 5.0)):
        httpserver.expect_ordered_request(
            "/data/3.0/onecall", query_string=current_query(station)
        ).respond_with_json(onecall_current(now - timedelta(seconds=30), temp))
    locations = platform_env / "locations.csv"
    locations.write_text(
        "location_id,name,lat,lon\n"
        f"office,Office,{OFFICE.lat},{OFFICE.lon}\n"
        f"amsterdam,Amsterdam,{AMSTERDAM.lat},{AMSTERDAM.lon}\n"
    )
    store = ObjectStore(local_dir=str(platform_env / "objects"))
    defs = dg.Definitions(
        jobs=[station_poll_job],
        resources={
            "station_feed": live_feed(httpserver, "office,amsterdam"),
            "coordinates": CoordinateRegistry(locations_file=str(locations)),
            "object_store": store,
        },
    )
    job = defs.resolve_job_def("station_poll_job")
    assert job.execute_in_process().success
    httpserver.check_assertions()

    key = "dagster/weather/observations_polls/observed_date=2026-11-22/16-05.jsonl"
    assert poll_key(store, now) == key
    assert store.list_keys("dagster/weather/observations_polls/") == [key]
    lines = [json.loads(line) for line in store.get_bytes(key).decode().splitlines()]
    assert [(r["station_id"], r["temperature_c"]) for r in lines] == [
        ("office", 6.5),
        ("amsterdam", 5.0),
    ]
    assert {r["observed_at"] for r in lines} == {"2026-11-22T16:05:11Z"}
    assert set(lines[0]) == set(RAW_SCHEMA)


def test_a_rerun_of_the_minute_overwrites_its_object(httpserver, platform_env, monkeypatch):
    now = datetime(2026, 11, 22, 16, 5, 1, tzinfo=UTC)
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    httpserver.expect_request("/data/3.0/onecall").respond_with_json(onecall_current(now, 4.0))
    locations = platform_env / "locations.csv"
    locations.write_text(f"location_id,name,lat,lon\noffice,Office,{OFFICE.lat},{OFFICE.lon}\n")
    store = ObjectStore(local_dir=str(platform_env / "objects"))
    resources = {
        "station_feed": live_feed(httpserver),
        "coordinates": CoordinateRegistry(locations_file=str(locations)),
        "object_store": store,
    }
    for _ in range(2):
        assert station_poll_job.execute_in_process(resources=resources).success
    rows = read_polls(store, now - timedelta(minutes=5), now + timedelta(minutes=5))
    assert rows.height == 1


def evaluate(monkeypatch, now: datetime, cursor: str | None, instance):
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    context = dg.build_sensor_context(cursor=cursor, instance=instance)
    return station_poll_sensor(context), context


def test_the_sensor_skips_in_simulated_mode(monkeypatch, platform_env, instance):
    monkeypatch.setenv("SOURCE_MODE", "simulated")
    result, context = evaluate(
        monkeypatch, datetime(2026, 11, 22, 16, 5, tzinfo=UTC), None, instance
    )
    assert isinstance(result, dg.SkipReason)
    assert "live-only" in result.skip_message
    assert context.cursor is None


def test_the_sensor_requests_the_current_minute_once_in_live_mode(
    monkeypatch, platform_env, instance
):
    monkeypatch.setenv("SOURCE_MODE", "live")
    now = datetime(2026, 11, 22, 16, 5, 59, tzinfo=UTC)
    result, context = evaluate(monkeypatch, now, None, instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "2026-11-22-16:05"
    assert context.cursor == "2026-11-22-16:05"
    again, _ = evaluate(monkeypatch, now, context.cursor, instance)
    assert isinstance(again, dg.SkipReason)
    later, _ = evaluate(monkeypatch, now + timedelta(seconds=2), context.cursor, instance)
    assert later.run_key == "2026-11-22-16:06"


def test_the_sensor_is_on_by_default_and_targets_the_poll_job():
    assert station_poll_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert station_poll_sensor.job_name == "station_poll_job"
    assert station_poll_sensor.minimum_interval_seconds == 15


def test_hours_without_polls_is_per_station():
    polls = polls_frame(
        poll_row("office", DAY + timedelta(hours=0, minutes=10), 5.0),
        poll_row("office", DAY + timedelta(hours=2, minutes=59, seconds=59), 5.5),
        poll_row("amsterdam", DAY + timedelta(hours=1), 4.0),
        poll_row("office", DAY + timedelta(hours=3), 9.9),  # outside the window
    )
    missing = hours_without_polls(polls, ["office", "amsterdam"], DAY, DAY + timedelta(hours=3))
    assert missing == {
        "office": [DAY + timedelta(hours=1)],
        "amsterdam": [DAY, DAY + timedelta(hours=2)],
    }
    assert hours_without_polls(None, ["office"], DAY, DAY + timedelta(hours=2)) == {
        "office": [DAY, DAY + timedelta(hours=1)]
    }


def test_merge_keeps_window_polls_once_and_orders_by_station_then_time():
    a = poll_row("office", DAY + timedelta(minutes=5), 5.0)
    polls = polls_frame(
        poll_row("amsterdam", DAY + timedelta(minutes=1), 4.0),
        a,
        a,  # the same `current` polled twice
        poll_row("office", DAY - timedelta(minutes=1), 1.0),  # before the window
        poll_row("utrecht", DAY + timedelta(minutes=2), 3.0),  # not a requested station
    )
    history = polls_frame(poll_row("office", DAY + timedelta(hours=1), 6.0))
    merged = merge_polls_and_history(
        polls, history, ["office", "amsterdam"], DAY, DAY + timedelta(hours=2)
    )
    assert merged.schema == pl.Schema(RAW_SCHEMA)
    assert merged.select("station_id", "temperature_c").rows() == [
        ("office", 5.0),
        ("office", 6.0),
        ("amsterdam", 4.0),
    ]


def test_live_readings_use_polls_and_timemachine_only_for_hours_without(httpserver):
    start = DAY + timedelta(hours=3)
    polls = polls_frame(
        *[poll_row("office", start + timedelta(minutes=m), 5.0 + m / 100) for m in range(0, 60)],
        poll_row("office", start + timedelta(hours=2, minutes=30), 8.0),
    )
    # Hour 3:00 and 5:00 have polls; only 4:00 goes to timemachine.
    gap = start + timedelta(hours=1)
    httpserver.expect_ordered_request(
        "/data/3.0/onecall/timemachine",
        query_string={
            "lat": "52.084516",
            "lon": "5.115539",
            "dt": str(int(gap.timestamp())),
            "units": "metric",
            "appid": "key",
        },
    ).respond_with_json(
        {
            "data": [
                {
                    "dt": int(gap.timestamp()),
                    "temp": 6.0,
                    "humidity": 90,
                    "pressure": 1000,
                    "wind_speed": 2,
                    "wind_deg": 10,
                }
            ]
        }
    )
    frame = live_feed(httpserver).readings([OFFICE], start, start + timedelta(hours=3), polls)
    httpserver.check_assertions()
    httpserver.check_handler_errors()
    assert len(httpserver.log) == 1
    assert frame.height == 62
    assert frame["observed_at"].is_sorted()
    assert frame.filter(pl.col("observed_at") == "2026-11-20T04:00:00Z")[
        "temperature_c"
    ].to_list() == [6.0]


def test_live_readings_fully_polled_make_no_call(httpserver):
    polls = polls_frame(poll_row("office", DAY + timedelta(minutes=30), 5.0))
    frame = live_feed(httpserver).readings([OFFICE], DAY, DAY + timedelta(hours=1), polls=polls)
    assert frame["temperature_c"].to_list() == [5.0]
    httpserver.check_assertions()
    assert len(httpserver.log) == 0


def test_simulated_readings_ignore_polls():
    feed = StationFeed(stations="office", interval_s=600.0)
    end = DAY + timedelta(hours=1)
    polls = polls_frame(poll_row("office", DAY + timedelta(minutes=30), 99.0))
    assert feed.readings([OFFICE], DAY, end, polls=polls).equals(feed.readings([OFFICE], DAY, end))


def test_read_polls_filters_to_the_window(platform_env):
    store = ObjectStore(local_dir=str(platform_env / "objects"))
    day = datetime(2026, 11, 22, tzinfo=UTC)
    minutes = [
        day - timedelta(minutes=1),  # 23:59 the day before: before the window
        day,
        day + timedelta(minutes=59),
        day + timedelta(hours=1),  # the window's end: excluded
        day + timedelta(hours=5),  # far outside: its object is not even read
    ]
    for i, minute in enumerate(minutes):
        frame = polls_frame(poll_row("office", minute + timedelta(seconds=20), float(i)))
        store.put_bytes(poll_key(store, minute), to_json_lines(frame))
    # A poll made at 01:00:xx whose `current` was observed at 00:58: it belongs to hour 00.
    late = polls_frame(poll_row("amsterdam", day + timedelta(minutes=58), 7.0))
    store.put_bytes(poll_key(store, day + timedelta(hours=1, minutes=1)), to_json_lines(late))
    store.put_bytes(
        store.key("weather/observations_polls", "observed_date=2026-11-22", "notes.txt"), b"x"
    )

    rows = read_polls(store, day, day + timedelta(hours=1))
    assert rows.schema == pl.Schema(RAW_SCHEMA)
    assert sorted(rows.select("station_id", "temperature_c").rows()) == [
        ("amsterdam", 7.0),
        ("office", 1.0),
        ("office", 2.0),
    ]
    assert read_polls(store, day + timedelta(days=3), day + timedelta(days=4)).height == 0
