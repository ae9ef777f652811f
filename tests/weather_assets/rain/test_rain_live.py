"""Live mode against a local HTTP server standing in for api.openweathermap.org.

Exercises the real network path (no simulator), the blocking checks on bad answers, the 401
message, and that the key never lands in an event, metadata entry or stored file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from werkzeug import Request, Response

from resources import clock
from resources.settings import load_settings
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS

FAKE_KEY = "fake-owm-key-5f3c9a"
LOCATIONS = "location_id,name,lat,lon\noffice,Office,52.084516,5.115539\nams,Amsterdam,52.3728,4.8936\nsyd,Sydney,-33.8688,151.2093\n"


def onecall_handler(rate_for):
    def handle(request: Request) -> Response:
        args = request.args
        assert args["exclude"] == "current,hourly,daily,alerts" and args["units"] == "metric"
        if args.get("appid") != FAKE_KEY:
            body = {
                "cod": 401,
                "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
            }
            return Response(json.dumps(body), status=401, content_type="application/json")
        lat, lon = float(args["lat"]), float(args["lon"])
        # The API answers for the present, from the next full minute (61 entries).
        first = int(clock.utcnow().timestamp()) // 60 * 60 + 60
        body = {
            "lat": round(lat, 4),
            "lon": round(lon, 4),
            "timezone": "Etc/GMT",
            "timezone_offset": 0,
        }
        if lat > 0:  # the southern city has no nowcast, like regions the real API does not cover
            body["minutely"] = [
                {"dt": first + 60 * i, "precipitation": rate_for(i)} for i in range(61)
            ]
        return Response(json.dumps(body), content_type="application/json")

    return handle


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch) -> datetime:
    """One "now" for the test, the run and the stand-in: the partition minute, the stale check
    and the minutes the stand-in forecasts agree however long the run takes. (With the wall
    clock, a run crossing a minute boundary got a nowcast from the next minute, one minute
    short of the partition's hour.)"""
    now = clock.utcnow()
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    return now


@pytest.fixture
def live_resources(platform_env, monkeypatch, httpserver):
    locations = platform_env / "locations.csv"
    locations.write_text(LOCATIONS)
    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("OPENWEATHERMAP_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENWEATHERMAP_BASE_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("LOCATIONS_FILE", str(locations))
    from definitions import build_resources

    return build_resources(load_settings())


def current_minute() -> str:
    return clock.utcnow().strftime(MINUTE_FORMAT)


def run(resources, instance):
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS],
        resources=resources,
        instance=instance,
        partition_key=current_minute(),
        raise_on_error=False,
    )


def test_live_minute_and_the_key_is_stored_nowhere(
    live_resources, instance, httpserver, platform_env
):
    httpserver.expect_request("/data/3.0/onecall").respond_with_handler(
        # Heavy rain only in the 61st entry, one minute past the hour after the call: not counted.
        onecall_handler(lambda i: 1.2 if i < 60 else 600.0)
    )
    result = run(live_resources, instance)
    assert result.success
    totals = result.asset_materializations_for_node("rolling_precipitation_sum")[0].metadata
    assert totals["source"].value == "live"
    assert totals["office_next_hour_mm"].value == pytest.approx(1.2)  # 60 min x 1.2 mm/h / 60

    events = instance.all_logs(result.run_id)
    assert events and not [e for e in events if FAKE_KEY in str(e)]
    for path in Path(platform_env).rglob("*"):
        if path.is_file() and path.name != "locations.csv":
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_a_negative_rate_fails_the_blocking_check_and_stops_the_totals(
    live_resources, instance, httpserver
):
    httpserver.expect_request("/data/3.0/onecall").respond_with_handler(
        onecall_handler(lambda i: -0.5 if i == 3 else 0.0)
    )
    result = run(live_resources, instance)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["rain_forecasts_rates_non_negative"] is False
    assert not result.asset_materializations_for_node("rolling_precipitation_sum")


def test_a_rejected_key_fails_naming_the_variable(
    live_resources, instance, httpserver, monkeypatch
):
    httpserver.expect_request("/data/3.0/onecall").respond_with_handler(
        onecall_handler(lambda i: 0.0)
    )
    # dg.EnvVar resolves when the run starts, so the rotated (wrong) key is what gets sent.
    monkeypatch.setenv("OPENWEATHERMAP_API_KEY", "wrong-key")
    result = run(live_resources, instance)
    assert not result.success
    message = result.failure_data_for_node("rain_forecasts").error.message
    assert (
        "OPENWEATHERMAP_API_KEY was rejected by OpenWeatherMap (HTTP 401: Invalid API key"
        in message
    )
    assert "wrong-key" not in message
