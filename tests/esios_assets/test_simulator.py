"""The ESIOS simulator, exercised through a real requests.Session like the platform."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
import requests

from esios_assets.simulator import (
    MADRID,
    EsiosSimulator,
    _is_holiday,
    demand_mw,
    indicator_460_payload,
)

BASE = "https://api.esios.ree.es"
URL = f"{BASE}/indicators/460"
HEADERS = {
    "Accept": "application/json; application/vnd.esios-api-v1+json",
    "Content-Type": "application/json",
    "x-api-key": "any-token",
}


def session(seed: int = 0) -> requests.Session:
    s = requests.Session()
    s.mount(BASE, EsiosSimulator(seed=seed))
    return s


def get(start: str, end: str, *, seed: int = 0, headers=HEADERS, **extra) -> requests.Response:
    params = {"start_date": start, "end_date": end, "time_trunc": "hour", **extra}
    return session(seed).get(URL, params=params, headers=headers)


def month(year: int, m: int, seed: int = 0) -> list[dict]:
    last = (date(year, m, 28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    response = get(f"{year}-{m:02d}-01T00:00:00", f"{last}T23:59:59", seed=seed)
    assert response.status_code == 200
    return response.json()["indicator"]["values"]


def test_shape_matches_the_real_api():
    response = get("2017-01-01T00:00:00", "2017-01-01T23:59:59")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    indicator = response.json()["indicator"]
    assert {
        k: indicator[k]
        for k in ("name", "short_name", "id", "composited", "step_type", "disaggregated")
    } == {
        "name": "Previsión diaria de la demanda eléctrica peninsular",
        "short_name": "Previsión diaria",
        "id": 460,
        "composited": False,
        "step_type": "linear",
        "disaggregated": False,
    }
    assert indicator["magnitud"] == [{"name": "Potencia", "id": 20}]
    assert indicator["tiempo"] == [{"name": "Hora", "id": 4}]
    assert indicator["geos"] == [{"geo_id": 8741, "geo_name": "Península"}]
    first = indicator["values"][0]
    assert set(first) == {"value", "datetime", "datetime_utc", "tz_time", "geo_id", "geo_name"}
    assert first["datetime"] == "2017-01-01T00:00:00.000+01:00"
    assert first["datetime_utc"] == "2016-12-31T23:00:00Z"
    assert first["tz_time"] == "2016-12-31T23:00:00.000Z"
    assert isinstance(first["value"], float) and first["value"].is_integer()
    assert len(indicator["values"]) == 24
    # Published the evening before the last day, local time with its offset.
    updated = datetime.fromisoformat(indicator["values_updated_at"])
    assert updated.date() == date(2016, 12, 31) and updated.utcoffset() == timedelta(hours=1)


def test_offsets_follow_spanish_summer_time():
    january = get("2017-01-15T00:00:00", "2017-01-15T23:59:59").json()["indicator"]["values"]
    july = get("2017-07-15T00:00:00", "2017-07-15T23:59:59").json()["indicator"]["values"]
    assert {v["datetime"][-6:] for v in january} == {"+01:00"}
    assert {v["datetime"][-6:] for v in july} == {"+02:00"}
    assert july[0]["datetime"] == "2017-07-15T00:00:00.000+02:00"
    assert july[0]["datetime_utc"] == "2017-07-14T22:00:00Z"
    for value in january + july:
        local = datetime.fromisoformat(value["datetime"])
        assert local == datetime.fromisoformat(value["datetime_utc"])


@pytest.mark.parametrize(("m", "hours"), [(1, 744), (2, 672), (3, 743), (10, 745), (12, 744)])
def test_a_local_month_is_exactly_its_local_hours(m, hours):
    values = month(2017, m)
    assert len(values) == hours
    instants = [datetime.fromisoformat(v["datetime_utc"]) for v in values]
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(instants))


def test_autumn_day_repeats_2am_with_both_offsets():
    values = get("2017-10-29T00:00:00", "2017-10-29T23:59:59").json()["indicator"]["values"]
    assert len(values) == 25
    two_am = [v["datetime"] for v in values if v["datetime"][11:13] == "02"]
    assert two_am == ["2017-10-29T02:00:00.000+02:00", "2017-10-29T02:00:00.000+01:00"]


def test_deterministic_in_seed_and_hour():
    a, b, c = month(2018, 5, seed=4), month(2018, 5, seed=4), month(2018, 5, seed=5)
    assert a == b
    assert [v["value"] for v in a] != [v["value"] for v in c]
    # An hour's value does not depend on the range it was asked in.
    single = get("2018-05-10T12:00:00", "2018-05-10T12:00:00", seed=4).json()
    (value,) = single["indicator"]["values"]
    assert value in a


def test_values_are_realistic_for_peninsular_spain():
    values = [v["value"] for m in range(1, 13) for v in month(2017, m)]
    assert min(values) >= 18_000 and max(values) <= 40_000
    assert 25_000 <= statistics.mean(values) <= 30_000


def test_daily_shape_night_trough_and_day_peaks():
    by_hour: dict[int, list[float]] = {h: [] for h in range(24)}
    for v in month(2017, 2):
        by_hour[int(v["datetime"][11:13])].append(v["value"])
    mean = {h: statistics.mean(xs) for h, xs in by_hour.items()}
    assert min(mean, key=mean.get) in (3, 4, 5)
    assert 10 <= max(mean, key=mean.get) <= 21
    assert mean[11] > 1.3 * mean[4] and mean[20] > 1.3 * mean[4]


def test_weekends_are_lower_than_weekdays():
    weekday, weekend = [], []
    for v in month(2017, 11) + month(2018, 2):
        local = datetime.fromisoformat(v["datetime"])
        if date(local.year, local.month, local.day) == date(2017, 11, 1):
            continue  # All Saints' Day, a holiday
        (weekend if local.weekday() >= 5 else weekday).append(v["value"])
    drop = 1 - statistics.mean(weekend) / statistics.mean(weekday)
    assert 0.07 <= drop <= 0.16


@pytest.mark.parametrize(
    "good_friday", [date(2000, 4, 21), date(2017, 4, 14), date(2018, 3, 30), date(2019, 4, 19)]
)
def test_good_friday_is_a_national_holiday_but_not_the_days_around_it(good_friday):
    assert _is_holiday(good_friday)
    # Maundy Thursday and Easter Monday are regional holidays only; the simulator is national.
    assert not _is_holiday(good_friday - timedelta(days=1))
    assert not _is_holiday(good_friday + timedelta(days=3))


def test_winter_and_summer_are_higher_than_spring_and_autumn():
    mean = {m: statistics.mean(v["value"] for v in month(2017, m)) for m in (1, 4, 7, 10)}
    assert min(mean[1], mean[7]) > max(mean[4], mean[10])


def test_demand_needs_an_aware_instant():
    with pytest.raises(ValueError, match="timezone-aware"):
        demand_mw(datetime(2017, 1, 1))
    assert demand_mw(datetime(2017, 1, 1, tzinfo=UTC)) == demand_mw(
        datetime(2017, 1, 1, 1, tzinfo=MADRID)
    )


def test_dates_with_an_offset_are_honoured():
    values = get("2017-01-01T00:00:00Z", "2017-01-01T02:00:00Z").json()["indicator"]["values"]
    assert [v["datetime_utc"] for v in values] == [
        "2017-01-01T00:00:00Z",
        "2017-01-01T01:00:00Z",
        "2017-01-01T02:00:00Z",
    ]
    payload = indicator_460_payload(
        datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 1, 1, 2, tzinfo=UTC)
    )
    assert payload["indicator"]["values"] == values


def test_missing_key_is_the_plain_text_401():
    headers = {k: v for k, v in HEADERS.items() if k != "x-api-key"}
    response = get("2017-01-01T00:00:00", "2017-01-01T23:59:59", headers=headers)
    assert response.status_code == 401
    assert response.text == "HTTP Token: Access denied."
    assert response.headers["Content-Type"].startswith("text/plain")
    old_style = {**headers, "Authorization": 'Token token="abc"'}  # retired in 2023
    assert get("2017-01-01", "2017-01-01", headers=old_style).status_code == 401


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2017-13-01T00:00:00", "2017-13-31T23:59:59", "start_date is not a valid date"),
        ("2017-01-01T00:00:00", "tomorrow", "end_date is not a valid date"),
        ("2017-01-02T00:00:00", "2017-01-01T00:00:00", "end_date is before start_date"),
        ("", "2017-01-01T00:00:00", "start_date is required"),
    ],
)
def test_bad_dates_are_a_json_400(start, end, message):
    response = get(start, end)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_unknown_paths_and_truncations():
    s = session()
    assert s.get(f"{BASE}/indicators/1293", headers=HEADERS).status_code == 404
    response = get("2017-01-01", "2017-01-02", time_trunc="day")
    assert response.status_code == 400 and "time_trunc" in response.json()["message"]


def test_counts_calls():
    simulator = EsiosSimulator()
    s = requests.Session()
    s.mount(BASE, simulator)
    s.get(URL, headers=HEADERS)
    s.get(URL)
    assert simulator.calls == 2
