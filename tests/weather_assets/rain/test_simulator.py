"""The One Call 3.0 simulator, exercised through a real requests.Session like the platform."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import requests

from weather_assets.rain.rain_field import has_nowcast, rain_rate_mm_per_h
from weather_assets.rain.simulator import OneCallSimulator, approximate_timezone

BASE = "https://api.openweathermap.org"
URL = f"{BASE}/data/3.0/onecall"
OFFICE = (52.084516, 5.115539)
AMERSFOORT = (52.1561, 5.3878)  # ~20 km east-north-east of the office, downwind
T0 = datetime(2025, 11, 22, 16, 1, 37, tzinfo=UTC)
T0_MINUTE = int(T0.timestamp()) // 60 * 60
T0_FIRST = T0_MINUTE + 60  # the real API's minutely starts at the minute after the call's
WEEK = T0_MINUTE + 60 * np.arange(7 * 1440)

INVALID_KEY = {
    "cod": 401,
    "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
}
RATE_LIMITED = {
    "cod": 429,
    "message": "Your account is temporary blocked due to exceeding of requests limitation of "
    "your subscription type. Please choose the proper subscription "
    "https://openweathermap.org/price",
}
CLOSED_SUBSCRIPTION = {
    "cod": 401,
    "message": "Please note that using One Call 3.0 requires a separate subscription to the One "
    "Call by Call plan. Learn more here https://openweathermap.org/price. If you have a valid "
    "subscription to the One Call by Call plan, but still receive this error, then please see "
    "https://openweathermap.org/faq#error401 for more info.",
}


def make_session(
    clock: Callable[[], datetime] = lambda: T0, **kwargs
) -> tuple[requests.Session, OneCallSimulator]:
    simulator = OneCallSimulator(clock=clock, **kwargs)
    session = requests.Session()
    session.mount(BASE, simulator)
    return session, simulator


def fetch(
    session: requests.Session, lat: object, lon: object, key: str | None = "test-key", **extra
) -> requests.Response:
    params = {"lat": lat, "lon": lon, "exclude": "current,hourly,daily,alerts", "units": "metric"}
    if key is not None:
        params["appid"] = key
    return session.get(URL, params={**params, **extra}, timeout=5)


def offset_km(lat: float, lon: float, east: float, north: float) -> tuple[float, float]:
    return lat + north / 110.574, lon + east / (111.320 * math.cos(math.radians(lat)))


def first_wet_minute(lat: float, lon: float, threshold: float = 0.2) -> int:
    rates = rain_rate_mm_per_h(lat, lon, WEEK, seed=0)
    assert (rates >= threshold).any()
    return int(WEEK[np.argmax(rates >= threshold)])


# --- 200 body -------------------------------------------------------------------------------


def test_body_shape_matches_the_real_api() -> None:
    session, _ = make_session()
    response = fetch(session, *OFFICE)

    assert response.status_code == 200
    assert response.reason == "OK"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.url.startswith(URL)
    body = response.json()
    assert set(body) == {"lat", "lon", "timezone", "timezone_offset", "minutely"}
    assert (body["lat"], body["lon"]) == (52.0845, 5.1155)
    assert (body["timezone"], body["timezone_offset"]) == ("Etc/GMT", 0)
    minutely = body["minutely"]
    assert len(minutely) == 61
    assert [m["dt"] for m in minutely] == [T0_FIRST + 60 * i for i in range(61)]
    for m in minutely:
        assert set(m) == {"dt", "precipitation"}
        assert m["precipitation"] >= 0
        assert round(m["precipitation"], 2) == m["precipitation"]


def test_body_agrees_with_the_pure_rain_field_during_a_shower() -> None:
    wet = first_wet_minute(*OFFICE)
    now = datetime.fromtimestamp(wet - 20 * 60 + 13, tz=UTC)
    session, _ = make_session(clock=lambda: now)
    minutely = fetch(session, *OFFICE).json()["minutely"]

    dts = np.array([m["dt"] for m in minutely])
    expected = np.round(rain_rate_mm_per_h(52.0845, 5.1155, dts, seed=0), 2)
    assert [m["precipitation"] for m in minutely] == expected.tolist()
    assert max(m["precipitation"] for m in minutely) >= 0.2


def test_precipitation_is_mm_per_hour_whatever_the_units() -> None:
    wet = first_wet_minute(*OFFICE)
    session, _ = make_session(clock=lambda: datetime.fromtimestamp(wet, tz=UTC))
    metric = fetch(session, *OFFICE).json()
    imperial = fetch(session, *OFFICE, units="imperial").json()
    assert imperial["minutely"] == metric["minutely"]


def test_current_is_the_call_time_unless_excluded() -> None:
    session, _ = make_session()
    body = fetch(session, *OFFICE, exclude="hourly,daily,alerts").json()
    assert list(body) == ["lat", "lon", "timezone", "timezone_offset", "current", "minutely"]
    assert body["current"] == {"dt": int(T0.timestamp())}
    assert body["minutely"][0]["dt"] == T0_FIRST
    assert fetch(session, *OFFICE).json()["minutely"] == body["minutely"]


def test_exclude_minutely_drops_the_block() -> None:
    session, _ = make_session()
    body = fetch(session, *OFFICE, exclude="current,minutely,hourly").json()
    assert set(body) == {"lat", "lon", "timezone", "timezone_offset"}


@pytest.mark.parametrize(
    ("lon", "expected"),
    [
        (5.1, ("Etc/GMT", 0)),
        (15.0, ("Etc/GMT-1", 3600)),
        (-75.0, ("Etc/GMT+5", -5 * 3600)),
        (179.9, ("Etc/GMT-12", 12 * 3600)),
        (-180.0, ("Etc/GMT+12", -12 * 3600)),
    ],
)
def test_timezone_is_approximated_from_longitude(lon: float, expected: tuple[str, int]) -> None:
    assert approximate_timezone(lon) == expected


def test_naive_clock_is_rejected() -> None:
    session, _ = make_session(clock=lambda: datetime(2025, 11, 22, 16, 1))
    with pytest.raises(ValueError, match="aware"):
        fetch(session, *OFFICE)


# --- determinism and coherence ---------------------------------------------------------------


def test_same_seed_same_answer_different_seed_different_field() -> None:
    wet = first_wet_minute(*OFFICE)
    now = datetime.fromtimestamp(wet - 600, tz=UTC)
    first = fetch(make_session(clock=lambda: now, seed=0)[0], *OFFICE).content
    second = fetch(make_session(clock=lambda: now, seed=0)[0], *OFFICE).content
    other = fetch(make_session(clock=lambda: now, seed=1)[0], *OFFICE).content
    assert first == second
    assert other != first
    assert not np.array_equal(
        rain_rate_mm_per_h(*OFFICE, WEEK, seed=0), rain_rate_mm_per_h(*OFFICE, WEEK, seed=1)
    )


def test_consecutive_fetches_agree_on_their_overlap() -> None:
    """The field depends on absolute time only, including across internal block edges."""
    wet = first_wet_minute(*OFFICE)
    block_edge = datetime(2025, 11, 22, 18, 0, tzinfo=UTC)
    starts = [wet - 90 * 60 + 60 * i for i in range(0, 120, 3)]
    starts += [int((block_edge - timedelta(minutes=m)).timestamp()) for m in (61, 30, 1, 0)]
    now = {"t": 0}
    session, _ = make_session(
        clock=lambda: datetime.fromtimestamp(now["t"], tz=UTC), calls_per_minute=None
    )
    wet_seen = False
    for start in starts:
        now["t"] = start + 59  # any second within the minute
        earlier = fetch(session, *OFFICE).json()["minutely"]
        now["t"] = start + 60
        later = fetch(session, *OFFICE).json()["minutely"]
        assert earlier[1:] == later[:-1]
        wet_seen = wet_seen or any(m["precipitation"] > 0 for m in earlier)
    assert wet_seen


def test_nearby_points_are_correlated_distant_ones_are_not() -> None:
    office = rain_rate_mm_per_h(*OFFICE, WEEK)
    near = rain_rate_mm_per_h(*offset_km(*OFFICE, east=3.5, north=3.5), WEEK)
    far = rain_rate_mm_per_h(*offset_km(*OFFICE, east=2000, north=0), WEEK)
    assert np.corrcoef(office, near)[0, 1] > 0.9
    assert abs(np.corrcoef(office, far)[0, 1]) < 0.2


def test_cells_drift_downwind() -> None:
    """Rain reaches Amersfoort after Utrecht: the cross-correlation peaks at a positive lag."""
    upwind = rain_rate_mm_per_h(*OFFICE, WEEK)
    downwind = rain_rate_mm_per_h(*AMERSFOORT, WEEK)

    def corr_at(lag: int) -> float:
        if lag >= 0:
            return float(np.corrcoef(upwind[: len(upwind) - lag], downwind[lag:])[0, 1])
        return float(np.corrcoef(upwind[-lag:], downwind[:lag])[0, 1])

    lags = list(range(-90, 91))
    best = lags[int(np.argmax([corr_at(lag) for lag in lags]))]
    assert 0 < best <= 60


def test_it_rains_sometimes_but_not_always_at_the_office() -> None:
    rates = rain_rate_mm_per_h(*OFFICE, WEEK)
    assert 0.03 <= (rates > 0).mean() <= 0.40
    assert rates.max() < 100
    assert (rates[rates > 0] >= 0.01).all()


# --- nowcast coverage ------------------------------------------------------------------------


def test_nowcast_coverage() -> None:
    assert has_nowcast(*OFFICE, seed=0, share=0.03)
    assert not has_nowcast(80.0, 10.0, seed=0, share=0.03)
    assert not has_nowcast(-76.0, 10.0, seed=0, share=0.03)

    rng = np.random.default_rng(1234)
    lats, lons = rng.uniform(-75, 75, 20_000), rng.uniform(-180, 180, 20_000)
    covered = np.array(
        [has_nowcast(a, o, seed=0, share=0.03) for a, o in zip(lats, lons, strict=True)]
    )
    assert abs((~covered).mean() - 0.03) < 0.015

    # Through HTTP: `minutely` is absent exactly where there is no nowcast.
    session, _ = make_session(calls_per_minute=None)
    without = np.flatnonzero(~covered)[:15]
    with_ = np.flatnonzero(covered)[:15]
    for i in (*without, *with_):
        body = fetch(session, round(lats[i], 4), round(lons[i], 4)).json()
        assert ("minutely" in body) == bool(covered[i])
        assert {"lat", "lon", "timezone", "timezone_offset"} <= set(body)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "invalid-key"])
def test_bad_key_gets_401(key: str | None) -> None:
    session, _ = make_session()
    response = fetch(session, *OFFICE, key=key)
    assert response.status_code == 401
    assert response.json() == INVALID_KEY
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(requests.HTTPError):
        response.raise_for_status()


def test_custom_key_check() -> None:
    session, _ = make_session(is_valid_key=lambda key: key == "the-key")
    assert fetch(session, *OFFICE, key="the-key").status_code == 200
    assert fetch(session, *OFFICE, key="another").status_code == 401


@pytest.mark.parametrize(
    ("lat", "lon", "message"),
    [
        (91, 5.1, "wrong latitude"),
        (-90.5, 5.1, "wrong latitude"),
        ("abc", 5.1, "wrong latitude"),
        ("nan", 5.1, "wrong latitude"),
        (52.1, 181, "wrong longitude"),
        (52.1, "x", "wrong longitude"),
        (None, 5.1, "Nothing to geocode"),
        (52.1, None, "Nothing to geocode"),
    ],
)
def test_bad_coordinates_get_400(lat: object, lon: object, message: str) -> None:
    session, _ = make_session()
    response = fetch(session, lat, lon)
    assert response.status_code == 400
    assert response.json() == {"cod": "400", "message": message}


def test_one_call_2_5_is_closed() -> None:
    session, _ = make_session()
    response = session.get(
        f"{BASE}/data/2.5/onecall", params={"lat": 52.08, "lon": 5.12, "appid": "test-key"}
    )
    assert response.status_code == 401
    assert response.json() == CLOSED_SUBSCRIPTION


def test_unknown_path_gets_404() -> None:
    session, _ = make_session()
    response = session.get(f"{BASE}/data/3.0/nowhere", params={"appid": "test-key"})
    assert response.status_code == 404
    assert response.json() == {"cod": 404, "message": "Internal error"}


def test_rate_limit_is_per_key_and_refills() -> None:
    session, simulator = make_session()
    clock = {"t": 1000.0}
    simulator._monotonic = lambda: clock["t"]  # a burst: no time passes

    statuses = [fetch(session, *OFFICE, key="key-a").status_code for _ in range(61)]
    assert statuses == [200] * 60 + [429]
    limited = fetch(session, *OFFICE, key="key-a")
    assert limited.status_code == 429
    assert limited.json() == RATE_LIMITED
    assert fetch(session, *OFFICE, key="key-b").status_code == 200

    clock["t"] += 1.0  # 60 calls/min refill one call per second
    assert fetch(session, *OFFICE, key="key-a").status_code == 200
    assert fetch(session, *OFFICE, key="key-a").status_code == 429


def test_rate_limit_on_the_real_monotonic_clock() -> None:
    session, _ = make_session()
    statuses = [fetch(session, *OFFICE, key="key-a").status_code for _ in range(70)]
    assert statuses[:60] == [200] * 60
    assert 429 in statuses
    assert fetch(session, *OFFICE, key="key-b").status_code == 200


def test_unlimited_when_calls_per_minute_is_none() -> None:
    session, _ = make_session(calls_per_minute=None)
    assert {fetch(session, *OFFICE).status_code for _ in range(150)} == {200}


# --- concurrency -----------------------------------------------------------------------------


def test_thread_safe_under_a_shared_session() -> None:
    session, simulator = make_session(calls_per_minute=None)
    errors: list[BaseException] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for i in range(200):
                lat, lon = OFFICE[0] + 0.01 * (i % 7), OFFICE[1] + 0.01 * n
                status = fetch(session, lat, lon).status_code
                with lock:
                    statuses.append(status)
        except BaseException as exc:  # collected and asserted in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert simulator.calls == 1600
    assert statuses == [200] * 1600


def test_rate_limit_holds_across_threads() -> None:
    session, simulator = make_session()
    simulator._monotonic = lambda: 1000.0
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            status = fetch(session, *OFFICE, key="shared").status_code
            with lock:
                results.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(200) == 60
    assert results.count(429) == 100
