"""The ESIOS client and resource against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from esios_assets.client import EsiosClient, EsiosResource, month_query
from resources.http import ApiAuthError, ApiError, HttpClient, RetryPolicy
from resources.source import SourceConfig

TOKEN = "tok-3f9a1c"
BODY = {
    "indicator": {
        "name": "Previsión diaria de la demanda eléctrica peninsular",
        "short_name": "Previsión diaria",
        "id": 460,
        "values_updated_at": "2018-12-31T23:55:13.000+01:00",
        "values": [
            {
                "value": 24123.0,
                "datetime": "2017-01-01T00:00:00.000+01:00",
                "datetime_utc": "2016-12-31T23:00:00Z",
                "tz_time": "2016-12-31T23:00:00.000Z",
                "geo_id": 8741,
                "geo_name": "Península",
            }
        ],
    }
}
JANUARY = {
    "start_date": "2017-01-01T00:00:00",
    "end_date": "2017-01-31T23:59:59",
    "time_trunc": "hour",
}
HEADERS = {
    "Accept": "application/json; application/vnd.esios-api-v1+json",
    "Content-Type": "application/json",
    "x-api-key": TOKEN,
}


def client(httpserver, attempts: int = 3) -> EsiosClient:
    http = HttpClient(
        service="ESIOS",
        base_url=httpserver.url_for("/").rstrip("/"),
        key_env_var="ESIOS_API_TOKEN",
        secrets=[TOKEN],
        timeout_s=1.0,
        retry=RetryPolicy(max_attempts=attempts, backoff_base_s=0.01),
    )
    return EsiosClient(http, TOKEN)


def expect(httpserver):
    return httpserver.expect_ordered_request(
        "/indicators/460", method="GET", query_string=JANUARY, headers=HEADERS
    )


def test_200_sends_the_month_query_and_the_three_headers(httpserver):
    expect(httpserver).respond_with_json(BODY)
    assert client(httpserver).demand_forecast_month(date(2017, 1, 1)) == BODY
    request, _ = httpserver.log[0]
    # The exact bytes on the wire (requests percent-encodes the colons).
    assert request.query_string.decode() == (
        "start_date=2017-01-01T00%3A00%3A00&end_date=2017-01-31T23%3A59%3A59&time_trunc=hour"
    )
    assert "Authorization" not in request.headers


def test_401_names_the_variable_and_hides_the_token(httpserver):
    expect(httpserver).respond_with_data(
        "HTTP Token: Access denied.", status=401, content_type="text/plain"
    )
    with pytest.raises(ApiAuthError) as caught:
        client(httpserver).demand_forecast_month(date(2017, 1, 1))
    message = str(caught.value)
    assert message.startswith("ESIOS_API_TOKEN was rejected by ESIOS (HTTP 401")
    assert "HTTP Token: Access denied." in message
    assert TOKEN not in message
    assert len(httpserver.log) == 1  # a rejected token is not retried


def test_500_then_200_is_retried(httpserver):
    expect(httpserver).respond_with_data("Internal Server Error", status=500)
    expect(httpserver).respond_with_json(BODY)
    esios = client(httpserver)
    assert esios.demand_forecast_month(date(2017, 1, 1)) == BODY
    assert esios.http.stats.retries == 1


def test_500_every_time_gives_up_with_a_clear_error(httpserver):
    httpserver.expect_request("/indicators/460").respond_with_data("down", status=500)
    with pytest.raises(ApiError, match=r"ESIOS answered HTTP 500 .* after 2 attempts"):
        client(httpserver, attempts=2).demand_forecast_month(date(2017, 1, 1))


def test_a_json_array_is_not_a_payload(httpserver):
    expect(httpserver).respond_with_json([1, 2])
    with pytest.raises(ApiError, match="not a JSON object"):
        client(httpserver).demand_forecast_month(date(2017, 1, 1))


@pytest.mark.parametrize(
    ("month", "start", "end"),
    [
        (date(2017, 2, 1), "2017-02-01T00:00:00", "2017-02-28T23:59:59"),
        (date(2020, 2, 1), "2020-02-01T00:00:00", "2020-02-29T23:59:59"),
        (date(2017, 3, 1), "2017-03-01T00:00:00", "2017-03-31T23:59:59"),
        (date(2017, 10, 1), "2017-10-01T00:00:00", "2017-10-31T23:59:59"),
        (date(2018, 12, 1), "2018-12-01T00:00:00", "2018-12-31T23:59:59"),
    ],
)
def test_month_query_is_the_local_month(month, start, end):
    assert month_query(month) == {"start_date": start, "end_date": end, "time_trunc": "hour"}


def test_month_query_rejects_a_mid_month_date():
    with pytest.raises(ValueError, match="first day of a month"):
        month_query(date(2017, 1, 15))


def test_live_resource_talks_to_the_configured_base_url(httpserver):
    expect(httpserver).respond_with_json(BODY)
    esios = EsiosResource(
        source=SourceConfig(mode="live"),
        base_url=httpserver.url_for("/").rstrip("/"),
        api_token=TOKEN,
    )
    assert esios.fetch_month(date(2017, 1, 1)) == BODY


def test_live_without_a_token_fails_naming_the_variable():
    for token in (None, "", "  "):
        with pytest.raises(dg.Failure, match="ESIOS_API_TOKEN is not set"):
            EsiosResource(source=SourceConfig(mode="live"), api_token=token).fetch_month(
                date(2017, 1, 1)
            )


def test_unknown_source_mode_fails():
    with pytest.raises(ValueError, match="SOURCE_MODE must be simulated or live, got 'offline'"):
        EsiosResource(source=SourceConfig(mode="offline"))


def test_simulated_resource_needs_no_token_and_is_deterministic():
    first = EsiosResource(source=SourceConfig(seed=1)).fetch_month(date(2017, 10, 1))
    again = EsiosResource(source=SourceConfig(seed=1)).fetch_month(date(2017, 10, 1))
    assert first == again
    assert len(first["indicator"]["values"]) == 745
