"""HttpClient against a real local HTTP server (pytest-httpserver), never mocks.

Backoff sleeps are injected as recorders so the whole file runs in about a second.
"""

from __future__ import annotations

import logging
import pickle
import random
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest
import requests
import requests.adapters
from pytest_httpserver import HTTPServer
from werkzeug import Response

from resources.http import (
    ApiAuthError,
    ApiError,
    ApiRateLimitError,
    ApiResponseError,
    HttpClient,
    RetryPolicy,
    parse_retry_after,
)
from resources.rate_limit import TokenBucket

SECRET = "SECRET123"
OWM_401 = {
    "cod": 401,
    "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
}
HTML_PAGE = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>" + (
    "<p>nginx</p>" * 100
)


@pytest.fixture(scope="module")
def make_httpserver() -> Iterator[HTTPServer]:
    """Overrides the plugin's server with a threaded one, so a deliberately slow handler
    (timeout tests) does not block the retry that follows it."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def client_factory(httpserver: HTTPServer, sleeps: SleepRecorder) -> Iterator:
    made: list[HttpClient] = []

    def make(**overrides) -> HttpClient:
        kwargs = {
            "service": "OpenWeatherMap",
            "base_url": httpserver.url_for("/"),
            "key_env_var": "OWM_API_KEY",
            "secrets": (SECRET,),
            "timeout_s": 2.0,
            "sleep": sleeps,
            "rng": random.Random(7),
        }
        kwargs.update(overrides)
        client = HttpClient(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exception_texts(exc: BaseException) -> list[str]:
    """str() of the exception and everything chained to it, plus the formatted traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.extend([str(current), repr(current), repr(current.args)])
        current = current.__cause__ or current.__context__
    return texts


# -- happy paths -------------------------------------------------------------------------------


def test_get_json_200(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_request("/data/3.0/onecall").respond_with_json({"current": {"temp": 21.5}})
    client = client_factory()
    assert client.get_json("/data/3.0/onecall") == {"current": {"temp": 21.5}}
    assert client.stats.requests == 1
    assert client.stats.retries == 0


def test_params_and_headers_arrive(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_request(
        "/data/3.0/onecall",
        query_string={"lat": "40.4", "lon": "-3.7", "appid": SECRET, "units": "metric"},
        headers={"X-Trace": "abc", "X-Default": "yes", "Accept": "application/json"},
    ).respond_with_json({"ok": True})
    client = client_factory(default_headers={"X-Default": "yes"})
    body = client.get_json(
        "data/3.0/onecall",  # no leading slash: joined onto base_url all the same
        params={"lat": 40.4, "lon": -3.7, "appid": SECRET, "units": "metric"},
        headers={"X-Trace": "abc"},
    )
    assert body == {"ok": True}


def test_base_url_with_path_prefix(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_request("/planetary/apod").respond_with_json({"title": "M31"})
    client = client_factory(service="NASA", base_url=httpserver.url_for("/planetary/"))
    assert client.get_json("/apod") == {"title": "M31"}


def test_get_bytes_returns_raw_bytes_from_absolute_url(
    httpserver: HTTPServer, client_factory
) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x01binary\xff"
    httpserver.expect_request("/image/xyz.png").respond_with_data(png, content_type="image/png")
    client = client_factory(base_url="https://images-api.nasa.invalid")
    assert client.get_bytes(httpserver.url_for("/image/xyz.png")) == png


def test_get_bytes_retries_like_get_json(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_oneshot_request("/img.jpg").respond_with_data("oops", status=502)
    httpserver.expect_request("/img.jpg").respond_with_data(b"\xff\xd8jpeg")
    client = client_factory()
    assert client.get_bytes("/img.jpg") == b"\xff\xd8jpeg"
    assert len(sleeps.delays) == 1
    assert client.stats.retries_by_reason == {"HTTP 502": 1}


def test_shared_by_a_thread_pool(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_request("/n").respond_with_handler(
        lambda request: Response(f'{{"n": {request.args["i"]}}}', content_type="application/json")
    )
    client = client_factory(pool_size=4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: client.get_json("/n", params={"i": i}), range(20)))
    assert [r["n"] for r in results] == list(range(20))
    assert client.stats.requests == 20


def test_context_manager_closes_session(httpserver: HTTPServer, sleeps: SleepRecorder) -> None:
    httpserver.expect_request("/x").respond_with_json([1, 2])
    with HttpClient(service="ESIOS", base_url=httpserver.url_for("/"), sleep=sleeps) as client:
        assert client.get_json("/x") == [1, 2]


# -- auth and other 4xx: never retried ---------------------------------------------------------


def test_401_raises_auth_error_naming_env_var_and_api_message(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_request("/data/3.0/onecall").respond_with_json(OWM_401, status=401)
    client = client_factory()
    with pytest.raises(ApiAuthError) as info:
        client.get_json("/data/3.0/onecall", params={"appid": SECRET})
    message = str(info.value)
    assert message.startswith(
        "OWM_API_KEY was rejected by OpenWeatherMap (HTTP 401: Invalid API key."
    )
    assert OWM_401["message"] in message
    assert info.value.status == 401
    assert info.value.service == "OpenWeatherMap"
    assert info.value.body == OWM_401
    assert len(httpserver.log) == 1
    assert sleeps.delays == []


def test_403_without_env_var_and_non_json_body(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_request("/indicators/1293").respond_with_data("Forbidden", status=403)
    client = client_factory(service="ESIOS", key_env_var=None)
    with pytest.raises(ApiAuthError) as info:
        client.get_json("/indicators/1293")
    assert str(info.value).startswith("ESIOS rejected the request (HTTP 403: 'Forbidden')")
    assert info.value.body is None
    assert len(httpserver.log) == 1


def test_400_exposes_parsed_body(httpserver: HTTPServer, client_factory) -> None:
    nasa_cap = {"reason": "Maximum number of search results have been displayed.", "code": 400}
    httpserver.expect_request("/search").respond_with_json(nasa_cap, status=400)
    client = client_factory(service="NASA", key_env_var="NASA_API_KEY")
    with pytest.raises(ApiError) as info:
        client.get_json("/search", params={"page": 101})
    assert type(info.value) is ApiError
    assert info.value.status == 400
    assert info.value.body == nasa_cap
    assert "HTTP 400" in str(info.value)
    assert nasa_cap["reason"] in str(info.value)
    assert len(httpserver.log) == 1


def test_404_is_not_retried(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_request("/nope").respond_with_data("not here", status=404)
    client = client_factory()
    with pytest.raises(ApiError, match=r"HTTP 404 .*'not here'") as info:
        client.get_json("/nope")
    assert info.value.body is None
    assert len(httpserver.log) == 1


# -- retries -----------------------------------------------------------------------------------


def test_429_honours_retry_after_seconds(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_oneshot_request("/q").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_request("/q").respond_with_json({"ok": 1})
    client = client_factory()
    assert client.get_json("/q") == {"ok": 1}
    assert sleeps.delays == [1.0]
    assert client.stats.retries_by_reason == {"HTTP 429": 1}
    assert len(httpserver.log) == 2


def test_503_honours_retry_after_http_date(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    when = int(time.time()) + 30  # a whole second: what an HTTP-date can say
    httpserver.expect_oneshot_request("/q").respond_with_data(
        "maintenance", status=503, headers={"Retry-After": formatdate(when, usegmt=True)}
    )
    httpserver.expect_request("/q").respond_with_json({"ok": 1})
    client = client_factory()
    before = time.time()
    assert client.get_json("/q") == {"ok": 1}
    after = time.time()
    assert len(sleeps.delays) == 1
    # The date minus the moment the client read it, however long the request took.
    assert when - after <= sleeps.delays[0] <= when - before


def test_retry_after_longer_than_cap_fails_at_once(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_request("/q").respond_with_data(
        "daily quota", status=429, headers={"Retry-After": "3600"}
    )
    client = client_factory(retry=RetryPolicy(max_retry_after_s=120))
    with pytest.raises(ApiRateLimitError, match="asked us to wait 60 min") as info:
        client.get_json("/q")
    assert "Retry-After: 3600" in str(info.value)
    assert info.value.status == 429
    assert len(httpserver.log) == 1
    assert sleeps.delays == []


def test_429_after_all_retries_raises_rate_limit_error(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_request("/q").respond_with_json({"message": "Too many calls"}, status=429)
    client = client_factory(retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ApiRateLimitError, match=r"HTTP 429 .* after 3 attempts: Too many calls"):
        client.get_json("/q")
    assert len(httpserver.log) == 3
    assert len(sleeps.delays) == 2


def test_500_then_200(httpserver: HTTPServer, client_factory, sleeps: SleepRecorder) -> None:
    httpserver.expect_oneshot_request("/q").respond_with_data("boom", status=500)
    httpserver.expect_request("/q").respond_with_json({"ok": 1})
    client = client_factory()
    assert client.get_json("/q") == {"ok": 1}
    assert len(sleeps.delays) == 1
    assert client.stats.snapshot() == {
        "requests": 2,
        "retries": 1,
        "retries_by_reason": {"HTTP 500": 1},
        "rate_limit_wait_s": 0.0,
    }


def test_503_five_times_gives_up_after_exactly_five_requests(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder, caplog
) -> None:
    httpserver.expect_request("/data/3.0/onecall").respond_with_data("unavailable", status=503)
    client = client_factory()
    caplog.set_level(logging.WARNING, logger="resources.http")
    with pytest.raises(ApiError) as info:
        client.get_json("/data/3.0/onecall", params={"appid": SECRET})
    assert type(info.value) is ApiError
    assert info.value.status == 503
    assert str(info.value) == (
        f"OpenWeatherMap answered HTTP 503 (GET {httpserver.url_for('/data/3.0/onecall')}) "
        "after 5 attempts: 'unavailable'"
    )
    assert len(httpserver.log) == 5
    assert len(sleeps.delays) == 4  # no pointless sleep after the last attempt
    assert client.stats.retries_by_reason == {"HTTP 503": 4}
    warnings = [r.getMessage() for r in caplog.records if r.name == "resources.http"]
    assert len(warnings) == 4
    assert warnings[0].startswith(
        "OpenWeatherMap: HTTP 503 on GET /data/3.0/onecall (attempt 1/5), retrying in "
    )
    assert warnings[-1].startswith(
        "OpenWeatherMap: HTTP 503 on GET /data/3.0/onecall (attempt 4/5)"
    )


def test_timeout_then_200(client_factory, sleeps: SleepRecorder) -> None:
    """The first connection is held open without an answer; the retry's is answered at once."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    body = b'{"ok": 1}'
    held: list[socket.socket] = []

    def serve() -> None:
        silent, _ = listener.accept()
        held.append(silent)  # never answered, closed when the test ends
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (len(body), body)
            )

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        # 1 s: ample for the immediate answer under load (the silent one never comes).
        client = client_factory(
            base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=1.0
        )
        assert client.get_json("/slow") == {"ok": 1}
        assert client.stats.retries_by_reason == {"timeout": 1}
        assert client.stats.requests == 2
        assert len(sleeps.delays) == 1
    finally:
        server.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_all_timeouts(silent_url: str, client_factory) -> None:
    client = client_factory(base_url=silent_url, timeout_s=0.2, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ApiError) as info:
        client.get_json("/slow")
    assert str(info.value) == (
        f"OpenWeatherMap did not answer within 0.2 s (GET {silent_url}/slow) after 2 attempts"
    )
    assert info.value.status is None
    assert client.stats.retries_by_reason == {"timeout": 1}


def test_malformed_json_then_200(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_oneshot_request("/q").respond_with_data(
        '{"current": {"temp": 21', content_type="application/json"
    )
    httpserver.expect_request("/q").respond_with_json({"current": {"temp": 21.5}})
    client = client_factory()
    assert client.get_json("/q") == {"current": {"temp": 21.5}}
    assert client.stats.retries_by_reason == {"malformed body": 1}


def test_html_200_is_a_response_error(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_request("/q").respond_with_data(HTML_PAGE, content_type="text/html")
    client = client_factory(retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ApiResponseError) as info:
        client.get_json("/q")
    message = str(info.value)
    assert message.startswith(
        "OpenWeatherMap returned a body that is not JSON (HTTP 200, content-type text/html)"
    )
    assert "after 3 attempts: '<!DOCTYPE html>" in message
    snippet = message.split("attempts: ", 1)[1]
    assert len(snippet) <= 200 + 2  # the quotes around it
    assert info.value.status == 200
    assert len(httpserver.log) == 3


def test_connection_refused(client_factory, sleeps: SleepRecorder) -> None:
    client = client_factory(base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ApiError, match=r"could not be reached .* after 5 attempts") as info:
        client.get_json("/q")
    assert info.value.status is None
    assert len(sleeps.delays) == 4
    assert client.stats.retries_by_reason == {"connection": 4}
    assert client.stats.requests == 5


# -- secrets -----------------------------------------------------------------------------------


def _fail_401(server: HTTPServer) -> None:
    # Some APIs echo the key back in their error message.
    server.expect_request("/q").respond_with_json({"message": f"key {SECRET} is invalid"}, 401)


def _fail_500(server: HTTPServer) -> None:
    server.expect_request("/q").respond_with_data(f"error for appid={SECRET}", status=500)


def _fail_400(server: HTTPServer) -> None:
    server.expect_request("/q").respond_with_json({"reason": f"bad appid {SECRET}"}, status=400)


def _fail_html(server: HTTPServer) -> None:
    server.expect_request("/q").respond_with_data(
        f"<html>{SECRET}</html>", content_type="text/html"
    )


def _fail_429_long(server: HTTPServer) -> None:
    server.expect_request("/q").respond_with_data("no", status=429, headers={"Retry-After": "999"})


@pytest.mark.parametrize(
    ("setup", "retried"),
    [
        (_fail_401, False),
        (_fail_500, True),
        (_fail_400, False),
        (_fail_html, True),
        ("silent", True),
        (_fail_429_long, False),
        (None, True),
    ],
    ids=["401", "500", "400", "html", "timeout", "retry-after", "connection-refused"],
)
def test_secret_never_leaks(
    httpserver: HTTPServer, silent_url: str, client_factory, caplog, setup, retried: bool
) -> None:
    if setup is None:
        base_url = f"http://127.0.0.1:{free_port()}"
    elif setup == "silent":
        base_url = silent_url
    else:
        setup(httpserver)
        base_url = httpserver.url_for("/")
    # Only the silent server needs the timeout to expire (a short one keeps it quick); the
    # others answer at once, well within the default 2 s, so load cannot turn them into timeouts.
    client = client_factory(
        base_url=base_url,
        retry=RetryPolicy(max_attempts=2, max_retry_after_s=5),
        **({"timeout_s": 0.2} if setup == "silent" else {}),
    )
    caplog.set_level(logging.DEBUG, logger="resources.http")
    with pytest.raises(ApiError) as info:
        client.get_json("/q", params={"appid": SECRET, "lat": 1})
    texts = exception_texts(info.value)
    # Everything logged on the client side (werkzeug's access log is the test server's own).
    client_records = [r for r in caplog.records if not r.name.startswith("werkzeug")]
    texts += [record.getMessage() for record in client_records]
    texts += [str(record.exc_text) for record in client_records]
    texts += [info.value.url]
    assert any(r.name == "resources.http" for r in client_records) == retried
    for text in texts:
        assert SECRET not in text
    assert "?" not in info.value.url  # the query string is dropped from the URL entirely
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_secret_from_env_var_is_redacted(monkeypatch, client_factory) -> None:
    monkeypatch.setenv("OWM_API_KEY", "k/ey+42")
    client = client_factory(secrets=())
    assert client.redact("x k/ey+42 y k%2Fey%2B42 z") == "x *** y *** z"


def test_redact_ignores_empty_secrets(client_factory) -> None:
    client = client_factory(secrets=("", SECRET))
    assert client.redact(f"a{SECRET}b") == "a***b"


# -- rate limiter and backoff ------------------------------------------------------------------


class CountingBucket(TokenBucket):
    def __init__(self) -> None:
        self.clock = 0.0
        self.calls = 0
        super().__init__(1.0, 1, clock=lambda: self.clock, sleep=self._advance)

    def _advance(self, seconds: float) -> None:
        self.clock += seconds

    def acquire(self, tokens: float = 1.0) -> float:
        self.calls += 1
        return super().acquire(tokens)


def test_rate_limiter_is_consulted_once_per_attempt(httpserver: HTTPServer, client_factory) -> None:
    httpserver.expect_oneshot_request("/q").respond_with_data("boom", status=500)
    httpserver.expect_oneshot_request("/q").respond_with_data("{bad json", status=200)
    httpserver.expect_request("/q").respond_with_json({"ok": 1})
    bucket = CountingBucket()
    client = client_factory(rate_limiter=bucket)
    assert client.get_json("/q") == {"ok": 1}
    assert bucket.calls == 3 == len(httpserver.log)
    # Capacity 1 at 1 token/s and a frozen fake clock: the 2nd and 3rd attempts waited 1 s each.
    assert client.stats.rate_limit_wait_s == pytest.approx(2.0)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=30.0)
    ceilings = [policy.backoff_ceiling_s(attempt) for attempt in range(1, 10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert policy.backoff_ceiling_s(10_000) == 30.0  # no overflow for absurd attempt numbers

    rng = random.Random(42)
    delays = [policy.backoff_s(attempt, rng) for attempt in range(1, 10)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    again = random.Random(42)
    assert delays == [policy.backoff_s(attempt, again) for attempt in range(1, 10)]  # seeded

    # Full jitter: uniform over [0, ceiling], not a fixed delay with a little noise.
    draws = [policy.backoff_s(3, rng) for _ in range(2000)]
    assert min(draws) < 0.1 and max(draws) > 1.9
    assert sum(draws) / len(draws) == pytest.approx(1.0, abs=0.1)


class UpperBoundRng(random.Random):
    """Full jitter drawn at its maximum, to see the ceiling the client actually uses."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_client_sleeps_follow_the_policy(
    httpserver: HTTPServer, client_factory, sleeps: SleepRecorder
) -> None:
    httpserver.expect_request("/q").respond_with_data("boom", status=502)
    client = client_factory(
        retry=RetryPolicy(max_attempts=6, backoff_base_s=1.0, backoff_max_s=5.0),
        rng=UpperBoundRng(),
    )
    with pytest.raises(ApiError):
        client.get_json("/q")
    assert sleeps.delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(formatdate(now + 45, usegmt=True), now=now) == pytest.approx(45)
    assert parse_retry_after(formatdate(now - 45, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy(retry_statuses={500}).retry_statuses == frozenset({500})


# -- adapter (in-process API simulator) --------------------------------------------------------


class EchoAdapter(requests.adapters.BaseAdapter):
    """A stand-in for an API simulator: answers in-process, no socket involved."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.requests.append(request)
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response._content = b'{"simulated": true}'
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_adapter_replaces_the_network(client_factory) -> None:
    adapter = EchoAdapter()
    client = client_factory(base_url="https://api.openweathermap.invalid", adapter=adapter)
    assert client.get_json("/data/3.0/onecall", params={"lat": 1, "appid": SECRET}) == {
        "simulated": True
    }
    (sent,) = adapter.requests
    assert sent.url == f"https://api.openweathermap.invalid/data/3.0/onecall?lat=1&appid={SECRET}"
    assert sent.headers["Accept"] == "application/json"


# -- exceptions --------------------------------------------------------------------------------


def test_exceptions_pickle_with_their_attributes() -> None:
    error = ApiResponseError("msg", "NASA", 400, "https://x/y", {"reason": "cap"})
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is ApiResponseError
    assert (str(clone), clone.service, clone.status, clone.url, clone.body) == (
        "msg",
        "NASA",
        400,
        "https://x/y",
        {"reason": "cap"},
    )


def test_body_cut_short_by_the_server_is_retried(client_factory, sleeps: SleepRecorder) -> None:
    """Content-Length promises more than arrives (connection dropped mid-body): retry."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    port = listener.getsockname()[1]
    full = b'{"temp": 21.5}'
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
        b'Connection: close\r\n\r\n{"te',
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(full), full),
    ]

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        client = client_factory(base_url=f"http://127.0.0.1:{port}")
        assert client.get_json("/q") == {"temp": 21.5}
        assert client.stats.retries_by_reason == {"connection": 1}
    finally:
        server.join(timeout=5)
        listener.close()
