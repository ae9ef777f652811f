"""HttpClient against hostile or broken servers: redirects to other origins, dripping and
oversized bodies, secrets echoed in error reasons. Real local servers throughout."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from resources.http import (
    ApiError,
    ApiRateLimitError,
    ApiRedirectError,
    ApiResponseError,
    HttpClient,
    RetryPolicy,
)
from resources.rate_limit import TokenBucket

SECRET = "SECRET123"
MIB = 1024 * 1024


@pytest.fixture
def other_server() -> Iterator[HTTPServer]:
    """A second server on another port: another origin, where no credential may arrive."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/", method="GET").respond_with_json({"stolen": True})
    server.expect_request("/q").respond_with_json({"stolen": True})
    server.start()
    yield server
    server.clear()
    server.stop()


def client_for(base_url: str, **overrides) -> HttpClient:
    kwargs = {
        "service": "ESIOS",
        "base_url": base_url,
        "key_env_var": "ESIOS_API_TOKEN",
        "secrets": (SECRET,),
        "timeout_s": 2.0,
        "retry": RetryPolicy(max_attempts=2, backoff_base_s=0.0),
        "default_headers": {"x-api-key": SECRET},
        "sleep": lambda _s: None,
    }
    kwargs.update(overrides)
    return HttpClient(**kwargs)


# -- redirects ---------------------------------------------------------------------------------


def test_redirect_to_another_host_is_refused_and_the_credential_stays_home(
    httpserver: HTTPServer, other_server: HTTPServer, caplog
) -> None:
    """requests keeps custom headers (ESIOS's ``x-api-key``) on a redirect to any host."""
    httpserver.expect_request("/q").respond_with_data(
        "", status=302, headers={"Location": other_server.url_for(f"/q?appid={SECRET}")}
    )
    caplog.set_level(logging.DEBUG)
    with client_for(httpserver.url_for("/")) as client, pytest.raises(ApiRedirectError) as info:
        client.get_json("/q", params={"appid": SECRET})
    assert other_server.log == []
    message = str(info.value)
    assert message == (
        f"ESIOS redirected GET /q (HTTP 302) to {other_server.url_for('/q')}, another origin: "
        "refused, so the credentials sent with the request cannot reach it"
    )
    assert info.value.status == 302
    client_logs = [r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug")]
    assert SECRET not in message + "".join(client_logs)
    assert len(httpserver.log) == 1  # not retried: the answer would be the same


def test_redirect_to_plain_http_is_refused(other_server: HTTPServer, tls_server: HTTPServer):
    """https -> http on the same host would send the token in clear text."""
    port = other_server.port
    tls_server.expect_request("/q").respond_with_data(
        "", status=301, headers={"Location": f"http://127.0.0.1:{port}/q"}
    )
    with client_for(tls_server.url_for("/")) as client, pytest.raises(ApiRedirectError) as info:
        client.get_json("/q")
    assert other_server.log == []
    assert "to plain http://" in str(info.value)


def test_redirect_within_the_origin_is_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data(
        "", status=308, headers={"Location": "/new?page=2"}
    )
    httpserver.expect_request(
        "/new", query_string="page=2", headers={"x-api-key": SECRET}
    ).respond_with_json({"ok": 1})
    with client_for(httpserver.url_for("/")) as client:
        assert client.get_json("/old") == {"ok": 1}
        assert client.stats.requests == 2


def test_a_redirect_loop_ends_with_a_clear_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/loop").respond_with_data(
        "", status=302, headers={"Location": "/loop"}
    )
    with client_for(httpserver.url_for("/")) as client, pytest.raises(ApiRedirectError) as info:
        client.get_json("/loop")
    assert str(info.value).startswith("ESIOS redirected GET /loop more than 5 times")


@pytest.fixture
def tls_server(tmp_path, monkeypatch) -> Iterator[HTTPServer]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate the client trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield server
    server.clear()
    server.stop()


# -- whole-request deadline and body size cap --------------------------------------------------


class RawServer:
    """Answers every connection with ``head`` then ``body`` dripped one byte per ``interval``."""

    def __init__(self, head: bytes, body: bytes, interval: float) -> None:
        self.head, self.body, self.interval = head, body, interval
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                for i in range(len(self.body)):
                    if self.stop.wait(self.interval):
                        return
                    conn.sendall(self.body[i : i + 1])
            except OSError:  # the client hung up: what it should do
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def test_a_dripping_body_is_cut_off_at_the_deadline() -> None:
    """One byte every 0.1 s never trips the 2 s read timeout; the 1 s deadline does."""
    body = b'{"values": "' + b"x" * 100 + b'"}'
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    server = RawServer(head, body, interval=0.1)
    try:
        client = client_for(server.url, deadline_s=1.0)
        started = time.monotonic()
        with pytest.raises(ApiError) as info:
            client.get_json("/drip")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert str(info.value).startswith(
        f"ESIOS did not send its whole answer within the 1 s deadline (GET {server.url}/drip; "
    )
    assert str(info.value).endswith(" after 2 attempts")
    assert client.stats.retries_by_reason == {"deadline": 1}
    assert server.connections == 2
    assert elapsed < 4.0  # two attempts of about 1 s each, not 11 s each


def test_a_declared_oversized_body_is_refused_before_it_is_read(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big.tif").respond_with_data(b"\0" * (3 * MIB))
    with (
        client_for(httpserver.url_for("/"), max_body_bytes=MIB) as client,
        pytest.raises(ApiResponseError) as info,
    ):
        client.get_bytes("/big.tif")
    assert str(info.value) == (
        f"ESIOS answered more than the 1 MiB cap (Content-Length: 3 MiB, 3145728 bytes) for "
        f"GET {httpserver.url_for('/big.tif')}"
    )
    assert len(httpserver.log) == 1  # not retried


def test_an_undeclared_oversized_body_stops_at_the_cap(httpserver: HTTPServer) -> None:
    """Chunked, no Content-Length, endless: reading stops just past the cap."""
    sent = [0]

    def endless(_request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            while sent[0] < 200 * MIB:  # a bound for the test's sake: "endless" to the client
                sent[0] += 64 * 1024
                yield b"\0" * (64 * 1024)

        return Response(chunks(), content_type="image/tiff")

    httpserver.expect_request("/huge.tif").respond_with_handler(endless)
    with (
        client_for(
            httpserver.url_for("/"), max_body_bytes=2 * MIB, max_body_env_var="NASA_MAX_DOWNLOAD_MB"
        ) as client,
        pytest.raises(ApiResponseError) as info,
    ):
        client.get_bytes("/huge.tif")
    assert str(info.value) == (
        "ESIOS answered more than the 2 MiB cap (stopped reading past 2 MiB) for "
        f"GET {httpserver.url_for('/huge.tif')}; raise NASA_MAX_DOWNLOAD_MB to allow more"
    )
    assert sent[0] < 50 * MIB


def test_a_body_within_the_cap_and_deadline_arrives_whole(httpserver: HTTPServer) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    httpserver.expect_request("/ok.tif").respond_with_data(payload)
    with client_for(httpserver.url_for("/"), max_body_bytes=MIB, deadline_s=10) as client:
        assert client.get_bytes("/ok.tif") == payload


def test_waiting_for_the_rate_limit_does_not_count_against_the_deadline(
    httpserver: HTTPServer,
) -> None:
    """The deadline bounds the server's answer, not the queue for the key's budget: a call that
    waited longer than the deadline for its turn still gets a prompt answer (before, it failed
    as "did not send its whole answer within the deadline, 0 bytes received")."""
    httpserver.expect_request("/q").respond_with_json({"ok": True})
    one_call_per_second = TokenBucket(rate_per_second=1.0, capacity=1)
    with client_for(
        httpserver.url_for("/"), deadline_s=0.4, rate_limiter=one_call_per_second
    ) as client:
        assert client.get_json("/q") == {"ok": True}
        assert client.get_json("/q") == {"ok": True}  # waited ~1 s for its turn
        assert client.stats.rate_limit_wait_s > 0.4


def test_deadline_and_cap_are_validated() -> None:
    with pytest.raises(ValueError, match=r"deadline_s must be > 0, got 0"):
        client_for("http://127.0.0.1:1", deadline_s=0)
    with pytest.raises(ValueError, match=r"max_body_bytes must be >= 1, got 0"):
        client_for("http://127.0.0.1:1", max_body_bytes=0)


# -- redaction of error reasons ----------------------------------------------------------------


def test_error_bodies_kept_on_exceptions_are_redacted(httpserver: HTTPServer) -> None:
    """``ApiError.body`` is what callers log or record (NASA's page-cap reason): no secrets."""
    httpserver.expect_request("/q").respond_with_json(
        {"reason": f"bad key {SECRET}", "nested": [{"detail": f"appid={SECRET}"}], "n": 3},
        status=400,
    )
    with client_for(httpserver.url_for("/")) as client, pytest.raises(ApiError) as info:
        client.get_json("/q")
    assert info.value.body == {
        "reason": "bad key ***",
        "nested": [{"detail": "appid=***"}],
        "n": 3,
    }
    assert SECRET not in str(info.value)


def test_retry_after_and_content_type_echoes_are_redacted(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/q").respond_with_data(
        "slow down", status=429, headers={"Retry-After": f"Wed, 21 Oct 2099 07:28:00 {SECRET}"}
    )
    httpserver.expect_request("/h").respond_with_data("<html>", content_type=f"text/html-{SECRET}")
    with client_for(httpserver.url_for("/")) as client:
        with pytest.raises(ApiRateLimitError) as limited:
            client.get_json("/q")
        with pytest.raises(ApiResponseError) as html:
            client.get_json("/h")
    assert SECRET not in str(limited.value)
    assert SECRET not in str(html.value)
    assert "***" in str(html.value)
