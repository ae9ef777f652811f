"""The next-hour window against the answer of the real One Call 3.0 API (issue 15).

The documented One Call 3.0 example answers a call made at ``current.dt`` 1684929490 (10 s into
its minute) with ``minutely`` from 1684929540, the next full minute, 61 entries. The simulator
must answer the same way, and the next-hour total must be the 60 forecast minutes after the
call: entries 0-59, never the 61st.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
import requests

from resources.clock import floor_minute
from weather_assets.locations import Location
from weather_assets.rain.simulator import OneCallSimulator
from weather_assets.rain.transforms import (
    forecasts_frame,
    minutely_rows,
    next_hour_precipitation,
)

BASE = "https://api.openweathermap.org"
URL = f"{BASE}/data/3.0/onecall"
DOCUMENTED_CALL = 1684929490  # current.dt of the documented example, 10 s into its minute
DOCUMENTED_FIRST = 1684929540  # its minutely[0].dt: the next full minute
# A simulated coordinate where it rains through the whole answer at that time (seed 0), the
# 61st entry included, so leaving the wrong minute in or out changes the total.
WET = Location("wet", "Wet", 50.8236, -75.8806)


def answer(now: datetime, location: Location = WET, exclude: str = "hourly,daily,alerts") -> dict:
    session = requests.Session()
    session.mount(BASE, OneCallSimulator(clock=lambda: now, calls_per_minute=None))
    response = session.get(
        URL,
        params={
            "lat": location.lat,
            "lon": location.lon,
            "exclude": exclude,
            "units": "metric",
            "appid": "test-key",
        },
        timeout=5,
    )
    assert response.status_code == 200
    return response.json()


def next_hour(body: dict, fetched_minute: datetime) -> dict:
    frame = forecasts_frame([(WET, minutely_rows(body, WET.location_id))], fetched_minute)
    out = next_hour_precipitation(frame)
    assert out.height == 1
    return out.row(0, named=True)


def test_the_documented_example() -> None:
    now = datetime.fromtimestamp(DOCUMENTED_CALL, UTC)
    body = answer(now)

    assert body["current"] == {"dt": DOCUMENTED_CALL}
    minutely = body["minutely"]
    assert len(minutely) == 61
    assert minutely[0]["dt"] == DOCUMENTED_FIRST
    assert [m["dt"] for m in minutely] == [DOCUMENTED_FIRST + 60 * i for i in range(61)]
    rates = [m["precipitation"] for m in minutely]
    assert all(r > 0 for r in rates), "the pinned coordinate must be wet through the answer"
    assert rates[0] != rates[60], "the first and the 61st entry must differ to tell them apart"

    fetched_minute = floor_minute(now)
    assert fetched_minute.timestamp() == math.floor(DOCUMENTED_CALL / 60) * 60
    row = next_hour(body, fetched_minute)
    assert row["minutes_covered"] == 60
    assert row["window_start"] == fetched_minute.replace(tzinfo=None)
    assert row["window_end"] == (fetched_minute + timedelta(minutes=60)).replace(tzinfo=None)
    # Entries 0..59, i.e. forecast minutes M+1 .. M+60; the 61st (M+61) is outside.
    assert row["next_hour_precipitation_mm"] == pytest.approx(sum(r / 60 for r in rates[:60]))
    assert row["next_hour_precipitation_mm"] != pytest.approx(sum(r / 60 for r in rates[1:]))


def test_a_call_exactly_on_a_minute_boundary_starts_at_the_next_minute() -> None:
    """The platform's clock is the partition minute itself (backfills): still the next minute."""
    minute = datetime.fromtimestamp(DOCUMENTED_FIRST, UTC)  # on a boundary
    body = answer(minute)

    assert body["current"] == {"dt": DOCUMENTED_FIRST}
    minutely = body["minutely"]
    assert len(minutely) == 61
    assert minutely[0]["dt"] == DOCUMENTED_FIRST + 60
    assert minutely[-1]["dt"] == DOCUMENTED_FIRST + 61 * 60

    row = next_hour(body, minute)
    rates = [m["precipitation"] for m in minutely]
    assert row["minutes_covered"] == 60
    assert row["window_end"] == (minute + timedelta(minutes=60)).replace(tzinfo=None)
    assert row["next_hour_precipitation_mm"] == pytest.approx(sum(r / 60 for r in rates[:60]))


def test_the_last_second_of_a_minute_still_answers_from_the_next_minute() -> None:
    body = answer(datetime.fromtimestamp(DOCUMENTED_FIRST - 1, UTC))
    assert body["current"] == {"dt": DOCUMENTED_FIRST - 1}
    assert body["minutely"][0]["dt"] == DOCUMENTED_FIRST


@pytest.mark.parametrize("exclude", ["current,hourly,daily,alerts", "current,minutely"])
def test_current_is_left_out_when_excluded(exclude: str) -> None:
    body = answer(datetime.fromtimestamp(DOCUMENTED_CALL, UTC), exclude=exclude)
    assert "current" not in body
    assert ("minutely" in body) == ("minutely" not in exclude)


def test_current_comes_without_a_nowcast_too() -> None:
    """Regions without a nowcast still get ``current`` (only ``minutely`` is absent)."""
    no_nowcast = Location("north", "North", 80.0, 10.0)
    body = answer(datetime.fromtimestamp(DOCUMENTED_CALL, UTC), location=no_nowcast)
    assert body["current"] == {"dt": DOCUMENTED_CALL}
    assert "minutely" not in body
    assert list(body) == ["lat", "lon", "timezone", "timezone_offset", "current"]
