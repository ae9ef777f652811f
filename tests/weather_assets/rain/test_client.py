"""The One Call client and its fan-out against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import pytest
from werkzeug import Response

from resources.http import ApiAuthError, ApiError, HttpClient, RetryPolicy
from resources.source import SourceConfig
from weather_assets.locations import Location
from weather_assets.rain.client import OneCallClient, OpenWeatherMapResource, fetch_nowcasts

KEY = "k-123"
BODY = {
    "lat": 52.0845,
    "lon": 5.1155,
    "timezone": "Europe/Amsterdam",
    "timezone_offset": 3600,
    "minutely": [{"dt": 1763827200 + 60 * i, "precipitation": 0.5} for i in range(61)],
}
QUERY = {
    "lat": "52.084516",
    "lon": "5.115539",
    "exclude": "current,hourly,daily,alerts",
    "units": "metric",
    "appid": KEY,
}
OFFICE = Location("office", "Office", 52.084516, 5.115539)


def client(server, attempts: int = 3) -> OneCallClient:
    """A client of ``server``: pytest-httpserver's, or a base URL."""
    base_url = server if isinstance(server, str) else server.url_for("/").rstrip("/")
    http = HttpClient(
        service="OpenWeatherMap",
        base_url=base_url,
        key_env_var="OPENWEATHERMAP_API_KEY",
        secrets=[KEY],
        timeout_s=0.5,
        retry=RetryPolicy(max_attempts=attempts, backoff_base_s=0.01),
    )
    return OneCallClient(http, KEY)


def expect(httpserver):
    return httpserver.expect_ordered_request("/data/3.0/onecall", query_string=QUERY)


def test_200_sends_the_one_call_3_query(httpserver):
    expect(httpserver).respond_with_json(BODY)
    assert client(httpserver).minutely(OFFICE.lat, OFFICE.lon) == BODY


def test_429_then_200_honours_retry_after(httpserver):
    expect(httpserver).respond_with_json(
        {"cod": 429, "message": "blocked"}, status=429, headers={"Retry-After": "0"}
    )
    expect(httpserver).respond_with_json(BODY)
    c = client(httpserver)
    assert c.minutely(OFFICE.lat, OFFICE.lon) == BODY
    assert c.retries == 1


def test_500_then_200(httpserver):
    expect(httpserver).respond_with_data("oops", status=500)
    expect(httpserver).respond_with_json(BODY)
    assert client(httpserver).minutely(OFFICE.lat, OFFICE.lon) == BODY


def test_malformed_json_then_200(httpserver):
    expect(httpserver).respond_with_data(
        '{"lat": 52.0, "minutely": [', content_type="application/json"
    )
    expect(httpserver).respond_with_json(BODY)
    assert client(httpserver).minutely(OFFICE.lat, OFFICE.lon) == BODY


def test_401_names_the_variable_and_hides_the_key(httpserver):
    body = {
        "cod": 401,
        "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
    }
    expect(httpserver).respond_with_json(body, status=401)
    with pytest.raises(ApiAuthError) as caught:
        client(httpserver).minutely(OFFICE.lat, OFFICE.lon)
    assert str(caught.value).startswith("OPENWEATHERMAP_API_KEY was rejected by OpenWeatherMap")
    assert KEY not in str(caught.value)


def test_timeout_every_time_becomes_a_clear_error(silent_url):
    """A server that never answers: every attempt times out, whatever the machine's load."""
    one_call = client(silent_url, attempts=2)
    with pytest.raises(ApiError, match=r"did not answer within 0\.5 s"):
        one_call.minutely(OFFICE.lat, OFFICE.lon)
    assert one_call.retries_by_reason == {"timeout": 1}


def test_fanout_keeps_order_reports_failures_and_aborts_on_a_rejected_key(httpserver):
    def handler(request):
        if request.args["lat"].startswith("1."):
            return Response("<html>maintenance</html>", status=200, content_type="text/html")
        if request.args["appid"] != KEY:
            return Response(json.dumps({"cod": 401, "message": "Invalid API key."}), status=401)
        return Response(json.dumps(BODY), content_type="application/json")

    httpserver.expect_request("/data/3.0/onecall").respond_with_handler(handler)
    good = [Location(f"p{i}", f"P{i}", 50.0 + i, 5.0) for i in range(4)]
    broken = Location("broken", "Broken", 1.5, 5.0)
    results = fetch_nowcasts(
        [good[:2], [broken, *good[2:]]], [client(httpserver)] * 2, max_workers=4
    )
    assert [r.location.location_id for r in results] == ["p0", "p1", "broken", "p2", "p3"]
    assert [r.error is None for r in results] == [True, True, False, True, True]
    assert "not JSON" in results[2].error and len(results[0].rows) == 61

    rejected = client(httpserver)
    rejected._api_key = "wrong"
    with pytest.raises(ApiAuthError):
        fetch_nowcasts([good], [rejected], max_workers=2)


def test_live_keys_spread_over_shards_and_missing_keys_are_named():
    clock = lambda: datetime(2026, 11, 22, 16, 5, tzinfo=UTC)  # noqa: E731
    two = OpenWeatherMapResource(source=SourceConfig(mode="live"), api_keys="a, b")
    clients = two.clients_for(2, clock=clock)
    assert clients[0] is not clients[1]
    assert [c._api_key for c in clients] == ["a", "b"]
    with pytest.raises(dg.Failure, match="3 shards of up to 59 coordinates need 3 API keys but 2"):
        two.clients_for(3, clock=clock)
    with pytest.raises(dg.Failure, match="OPENWEATHERMAP_API_KEY is not set"):
        OpenWeatherMapResource(source=SourceConfig(mode="live")).clients_for(1, clock=clock)


def test_simulated_mode_gives_each_shard_its_own_key():
    sim = OpenWeatherMapResource(calls_per_minute=2)
    clients = sim.clients_for(3, clock=lambda: datetime(2026, 11, 22, 16, 5, tzinfo=UTC))
    assert len({id(c) for c in clients}) == 3
    results = fetch_nowcasts([[OFFICE, OFFICE], [OFFICE, OFFICE], [OFFICE]], clients, max_workers=4)
    assert all(r.error is None and len(r.rows) == 61 for r in results)
