"""Injected faults (SIMULATOR_FAULT_RATE): each kind, seen through the platform's HTTP client."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from esios_assets.simulator import EsiosSimulator
from nasa_assets.simulator import NasaImagesSimulator
from resources.http import ApiError, ApiRateLimitError, ApiResponseError, HttpClient, RetryPolicy
from resources.settings import SettingsError, load_settings
from resources.simulators.faults import FAULT_KINDS, FaultInjector, FaultPlan
from weather_assets.rain.simulator import OneCallSimulator

OWM = "https://api.openweathermap.org"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PARAMS = {"lat": "52.08", "lon": "5.11", "exclude": "current,hourly,daily,alerts", "appid": "k"}
# With seed 0 the first draw (0.844) is below this rate: the first request is a fault.
ALWAYS_FIRST = 0.9999


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def owm_client(plan: FaultPlan, *, attempts: int = 1, sleeps: Sleeps | None = None):
    simulator = OneCallSimulator(clock=lambda: NOW, calls_per_minute=None, faults=plan)
    client = HttpClient(
        service="OpenWeatherMap",
        base_url=OWM,
        secrets=["k"],
        retry=RetryPolicy(max_attempts=attempts, backoff_base_s=0.0),
        adapter=simulator,
        sleep=Sleeps() if sleeps is None else sleeps,
    )
    return client, simulator


def only(kind: str) -> FaultPlan:
    return FaultPlan(rate=ALWAYS_FIRST, seed=0, kinds=(kind,))


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        ("http_500", ApiError, "answered HTTP 500"),
        ("http_502", ApiError, "answered HTTP 502"),
        ("http_503", ApiError, "answered HTTP 503"),
        ("http_429", ApiRateLimitError, "answered HTTP 429"),
        ("timeout", ApiError, "did not answer within"),
        ("truncated_body", ApiResponseError, "not JSON (HTTP 200, content-type application/json)"),
        ("html_body", ApiResponseError, "not JSON (HTTP 200, content-type text/html)"),
    ],
)
def test_each_fault_kind_is_the_failure_the_client_expects(kind, error, text) -> None:
    client, simulator = owm_client(only(kind))
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        client.get_json("/data/3.0/onecall", params=PARAMS)
    assert simulator.faults.injected == {kind: 1}


def test_a_truncated_body_is_the_real_answer_cut_off() -> None:
    client, _ = owm_client(only("truncated_body"))
    with pytest.raises(ApiResponseError) as caught:
        client.get_json("/data/3.0/onecall", params=PARAMS)
    # The snippet in the error starts like the real One Call answer.
    assert '{"lat":52.08' in str(caught.value)


def test_429_carries_retry_after_and_the_client_waits_exactly_that() -> None:
    sleeps = Sleeps()
    plan = FaultPlan(rate=0.5, seed=3, kinds=("http_429",), retry_after_s=7)
    client, simulator = owm_client(plan, attempts=20, sleeps=sleeps)
    for _ in range(10):
        client.get_json("/data/3.0/onecall", params=PARAMS)
    injected = simulator.faults.injected["http_429"]
    assert injected > 0
    assert sleeps == [7.0] * injected
    assert client.stats.retries_by_reason == {"HTTP 429": injected}


def test_a_cut_off_binary_download_is_a_connection_error_and_is_retried() -> None:
    # Seed 4: the first draw is a fault, the second is not.
    plan = FaultPlan(rate=0.5, seed=4, kinds=("truncated_body",))
    simulator = NasaImagesSimulator(faults=plan)
    sleeps = Sleeps()
    client = HttpClient(
        service="NASA assets",
        base_url="https://images-assets.nasa.gov",
        retry=RetryPolicy(max_attempts=3, backoff_base_s=0.0),
        adapter=simulator,
        sleep=sleeps,
    )
    # The search gives a real image URL; its first download attempt is cut off.
    search = NasaImagesSimulator()
    api = HttpClient(service="NASA", base_url="https://images-api.nasa.gov", adapter=search)
    items = api.get_json("/search", params={"q": "moon", "media_type": "image"})
    nasa_id = items["collection"]["items"][0]["data"][0]["nasa_id"]
    manifest = api.get_json(f"/asset/{nasa_id}")
    href = manifest["collection"]["items"][0]["href"].replace("http://", "https://")
    image = client.get_bytes(href)
    assert image.startswith(b"\x89PNG")
    assert client.stats.retries_by_reason == {"connection": 1}


def test_with_retries_every_call_succeeds_and_every_kind_is_seen() -> None:
    client, simulator = owm_client(FaultPlan(rate=0.3, seed=11, retry_after_s=0), attempts=20)
    answers = [client.get_json("/data/3.0/onecall", params=PARAMS) for _ in range(300)]
    assert all(a["lat"] == 52.08 for a in answers)
    injected = simulator.faults.injected
    assert set(injected) == set(FAULT_KINDS)
    assert client.stats.retries == sum(injected.values())
    assert 0.2 < sum(injected.values()) / simulator.calls < 0.4


def test_esios_simulator_faults_then_answers() -> None:
    simulator = EsiosSimulator(faults=FaultPlan(rate=0.5, seed=1, retry_after_s=0))
    client = HttpClient(
        service="ESIOS",
        base_url="https://api.esios.ree.es",
        retry=RetryPolicy(max_attempts=30, backoff_base_s=0.0),
        adapter=simulator,
        sleep=Sleeps(),
    )
    for _ in range(5):
        body = client.get_json(
            "/indicators/460",
            params={"start_date": "2017-01-01T00:00", "end_date": "2017-01-01T23:59"},
            headers={"x-api-key": "t"},
        )
        assert len(body["indicator"]["values"]) == 24
    assert sum(simulator.faults.injected.values()) == client.stats.retries > 0


def test_rate_zero_injects_nothing() -> None:
    injector = FaultInjector(FaultPlan())
    assert [injector.draw() for _ in range(1000)] == [None] * 1000
    assert injector.injected == {}


def test_draws_follow_the_rate_and_a_seed_reproduces_them() -> None:
    a = FaultInjector(FaultPlan(rate=0.2, seed=5))
    b = FaultInjector(FaultPlan(rate=0.2, seed=5))
    draws = [a.draw() for _ in range(5000)]
    assert draws == [b.draw() for _ in range(5000)]
    share = sum(d is not None for d in draws) / len(draws)
    assert 0.18 < share < 0.22


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.0}, "fault rate must be in"),
        ({"rate": -0.1}, "fault rate must be in"),
        ({"rate": 0.1, "kinds": ("http_418",)}, "http_418"),
        ({"rate": 0.1, "kinds": ()}, "non-empty"),
        ({"rate": 0.1, "retry_after_s": -1}, "retry_after_s"),
    ],
)
def test_bad_plans_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan(**kwargs)


@pytest.mark.parametrize("raw", ["abc", "1", "1.5", "-0.2"])
def test_bad_fault_rate_setting_names_the_variable(monkeypatch, raw) -> None:
    monkeypatch.setenv("SIMULATOR_FAULT_RATE", raw)
    with pytest.raises(SettingsError, match="SIMULATOR_FAULT_RATE"):
        load_settings()


def test_fault_rate_reaches_every_simulated_api(platform_env, monkeypatch) -> None:
    from definitions import build_resources

    monkeypatch.setenv("SIMULATOR_FAULT_RATE", "0.2")
    resources = build_resources(load_settings())
    assert resources["openweathermap"].source.fault_rate == 0.2
    assert resources["esios"].source.fault_rate == 0.2
    assert resources["nasa_library"].spec().source.fault_rate == 0.2
    clients = resources["openweathermap"].clients_for(1, clock=lambda: NOW)
    assert clients[0]._http._session.get_adapter(OWM).faults.plan.rate == 0.2


def test_injector_is_safe_under_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    injector = FaultInjector(FaultPlan(rate=0.5, seed=random.randrange(1000)))
    with ThreadPoolExecutor(8) as pool:
        draws = list(pool.map(lambda _: injector.draw(), range(8000)))
    assert sum(injector.injected.values()) == sum(d is not None for d in draws)
