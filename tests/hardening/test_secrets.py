"""Secrets stay secret (issue #8, point 6): live mode against local stand-ins of OpenWeatherMap,
ESIOS and NASA, with fake keys, on success AND error paths (errors are where keys leak), then a
search for every form of every key in every log record, stdout/stderr, stored event, run,
snapshot and file.

The stand-ins are deliberately indiscreet, as real servers and proxies can be: their error pages
and messages echo the request URL, the query string and the credential headers back, so the
platform must redact what it is told, not only what it sends.

What counts as "the key" (``Scanner``): the raw value, its URL-encoded forms (``quote``,
``quote_plus``, lower-case hex), base64 at the three byte alignments (a key inside a pickled or
encoded blob) and its distinctive fragment (a truncated key). Files are searched byte for byte
and through their formats, because a byte search alone misses compressed storage: gzip (the
raw-payload archive), SQLite (Dagster's zlib-compressed snapshots), DuckDB (string compression)
and parquet. ``test_the_scanner_finds_a_planted_key_*`` prove each of those channels does find a
key, so the absence assertions mean something.

Not searched: the stand-in servers' own access logs (``werkzeug``, ``pytest_httpserver``): they are
the API provider's logs, not the platform's. py4j's DEBUG wire trace is searched like every other
logger (resources/spark.py drops the pickled task payloads from it).
"""

import base64
import gzip
import json
import logging
import os
import pickle
import re
import socket
import sqlite3
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster._serdes import serialize_value
from dagster_pyspark import LazyPySparkResource
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from esios_assets.assets import ESIOS_ASSETS, esios_demand_forecast
from esios_assets.checks import (
    esios_hours_complete,
    esios_no_duplicate_hours,
    esios_schema,
    esios_values_plausible,
)
from esios_assets.simulator import indicator_460_payload
from nasa_assets.assets import NASA_ASSETS
from nasa_assets.checks import NASA_CHECKS
from nasa_assets.client import NasaImagesResource
from nasa_assets.simulator import png_bytes
from resources.settings import load_settings
from resources.source import SourceConfig
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS
from weather_assets.rain.client import OpenWeatherMapResource

# Distinctive fakes; "+", "/" and "=" change under URL encoding, so the encoded forms differ
# from the raw ones and both are searched. Each has a 12-character fragment unique to it.
OWM_KEYS = ("sk-FAKE-owm-3f9a1c7e5b2d", "sk-FAKE-owm+8d2eb4c6a0f1/x=")  # ..._API_KEYS
OWM_KEY = "sk-FAKE-owm-7f3a9c41d2e8"  # OPENWEATHERMAP_API_KEY
ESIOS_TOKEN = "sk-FAKE-esios+5ce19a7b3d60/="
NASA_KEY = "sk-FAKE-nasa+0ed46b2f8c91/a="
ALL_SECRETS = (*OWM_KEYS, OWM_KEY, ESIOS_TOKEN, NASA_KEY)

# Everything a production operator might turn on to debug HTTP: these loggers' records, down to
# DEBUG, are stored in the run's event log (urllib3 logs every request line it sends).
DEBUG_LOGGING = {
    "python_logs": {
        "managed_python_loggers": [
            "urllib3",
            "requests",
            "resources",
            "weather_assets",
            "esios_assets",
            "nasa_assets",
        ],
        "python_log_level": "DEBUG",
    }
}
NO_STEP_RETRIES = {"execution": {"config": {"retries": {"disabled": {}}}}}
STAND_IN_LOGGERS = ("werkzeug", "pytest_httpserver")
MADRID = ZoneInfo("Europe/Madrid")


# -- the scanner -----------------------------------------------------------------------------


def _base64_forms(secret: bytes) -> set[bytes]:
    """The base64 characters that depend only on ``secret``, at each of the three alignments
    it can have inside a larger encoded blob (standard and URL-safe alphabets)."""
    forms = set()
    for pad in range(3):
        first = -(-8 * pad // 6)  # ceil: the first character made only of the secret's bits
        last = 8 * (pad + len(secret)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(b"\0" * pad + secret)[first:last])
    return forms


def _percent_lower(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


@dataclass(frozen=True)
class Scanner:
    """Every recognisable form of some secrets, and where they turn up."""

    needles: tuple[tuple[str, bytes], ...]

    @classmethod
    def for_secrets(cls, *secrets: str) -> "Scanner":
        needles: dict[bytes, str] = {}
        for secret in secrets:
            name = secret[:14] + "..."
            textual = {
                "raw": secret,
                "quote": quote(secret, safe=""),
                "quote(safe='/')": quote(secret),
                "quote_plus": quote_plus(secret),
                "quote lower-case": _percent_lower(quote(secret, safe="")),
                "quote_plus lower-case": _percent_lower(quote_plus(secret)),
            }
            fragments = [run for run in re.findall(r"[0-9a-z]+", secret) if len(run) >= 12]
            assert fragments, f"{secret!r} needs a distinctive 12-character fragment"
            textual["fragment"] = fragments[0]
            for form, text in textual.items():
                needles.setdefault(text.encode(), f"{name} ({form})")
            for i, b64 in enumerate(sorted(_base64_forms(secret.encode()))):
                needles.setdefault(b64, f"{name} (base64 #{i})")
        return cls(tuple((label, needle) for needle, label in needles.items()))

    def find(self, data: bytes | str) -> list[str]:
        blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        return [label for label, needle in self.needles if needle in blob]

    # where to look

    def in_texts(self, texts: Iterable[tuple[str, str | bytes]]) -> list[str]:
        return [f"{where}: {label}" for where, text in texts for label in self.find(text)]

    def in_files(self, *roots: Path) -> list[str]:
        texts = (
            (f"{path} [{view}]", data)
            for root in roots
            for path in sorted(p for p in root.rglob("*") if p.is_file())
            for view, data in file_views(path)
        )
        return self.in_texts(texts)

    def in_instance(self, instance: dg.DagsterInstance) -> list[str]:
        return self.in_texts(instance_texts(instance))

    def in_logs(self, records: Iterable[logging.LogRecord], *streams: str) -> list[str]:
        texts = [(f"log record {r.name}:{r.levelname}", record_text(r)) for r in records]
        texts += [(f"captured stream #{i}", text) for i, text in enumerate(streams)]
        return self.in_texts(texts)


def record_text(record: logging.LogRecord) -> str:
    """The rendered line plus every attribute (args, exception, Dagster's metadata)."""
    line = logging.Formatter().format(record)
    return f"{line}\n{record.__dict__!r}"


def file_views(path: Path) -> Iterator[tuple[str, bytes]]:
    """The file's bytes, then its decoded content where a format hides text from a byte search."""
    data = path.read_bytes()
    yield "bytes", data
    if data[:2] == b"\x1f\x8b":
        yield "gunzip", gzip.decompress(data)
    if data[:16] == b"SQLite format 3\x00":
        yield "sqlite rows", _sqlite_rows(path)
    if data[8:12] == b"DUCK":
        yield "duckdb rows", _duckdb_rows(path)
    if data[:4] == b"PAR1":
        yield "parquet rows", repr(pq.read_table(path).to_pylist()).encode()


def _inflate(value: bytes) -> bytes:
    """Dagster stores snapshots zlib-compressed; anything else stays as it is."""
    try:
        return zlib.decompress(value)
    except zlib.error:
        return value


def _sqlite_rows(path: Path) -> bytes:
    out = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for row in conn.execute(f'select * from "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        out += [value, _inflate(value)]
                    else:
                        out.append(str(value).encode())
    return b"\n".join(out)


def _duckdb_rows(path: Path) -> bytes:
    out = []
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            out.append(repr(conn.execute(f'select * from "{schema}"."{table}"').fetchall()))
    return "\n".join(out).encode()


def instance_texts(instance: dg.DagsterInstance) -> Iterator[tuple[str, str]]:
    """Every run (with its run config and tags), event log entry and snapshot, serialized."""
    runs = instance.get_runs()
    assert runs, "no run was stored: nothing to search"
    for run in runs:
        rid = run.run_id[:8]
        yield f"run {rid} (run config, tags)", serialize_value(run)
        for entry in instance.all_logs(run.run_id):
            kind = entry.dagster_event_type.value if entry.dagster_event_type else "log"
            yield f"event {kind} of run {rid} ({entry.step_key})", serialize_value(entry)
        if run.job_snapshot_id:
            snapshot = instance.get_job_snapshot(run.job_snapshot_id)
            yield f"job snapshot of run {rid}", serialize_value(snapshot)
        if run.execution_plan_snapshot_id:
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            yield f"execution plan snapshot of run {rid}", serialize_value(plan)


SCANNER = Scanner.for_secrets(*ALL_SECRETS)


def spark_local_dirs() -> list[Path]:
    """The shared Spark session's scratch directory (PySpark's temp files, e.g. the rows
    ``parallelize`` hands to the JVM). This job has no shuffle and no broadcast, so the block
    manager's own directories hold nothing of it."""
    from tests.weather_assets.conftest import _session

    if _session is None:
        return []
    return [Path(_session.sparkContext._temp_dir).parent]


# -- a platform in tmp_path, and the stand-in servers -----------------------------------------


@dataclass
class Platform:
    root: Path
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def resources(self, **overrides: object) -> dict[str, object]:
        """The real wiring (definitions.build_resources) for the environment as it is now."""
        from definitions import build_resources

        return {**build_resources(load_settings()), **overrides}

    def locations(self, name: str, lats: Iterable[float]) -> None:
        path = self.root / f"{name}.csv"
        lines = ["location_id,name,lat,lon"]
        lines += [f"{name}{i},Place {i},{lat:.6f},5.100000" for i, lat in enumerate(lats)]
        path.write_text("\n".join(lines) + "\n")
        self.monkeypatch.setenv("LOCATIONS_FILE", str(path))


@pytest.fixture
def platform(tmp_path, monkeypatch, caplog, platform_env) -> Iterator[Platform]:
    """SOURCE_MODE=live, DATA_DIR and an on-disk Dagster instance (runs, event logs, compute
    logs) in tmp_path, Python logging captured at DEBUG, the stand-ins' access logs muted."""
    monkeypatch.setenv("SOURCE_MODE", "live")
    for name in ("ESIOS_API_TOKEN", "NASA_API_KEY", "SQL_DATABASE_URL", "S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    for name in STAND_IN_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "disabled", True)
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=DEBUG_LOGGING) as instance:
        yield Platform(tmp_path, instance, monkeypatch)


@pytest.fixture
def stalled() -> Iterator[threading.Event]:
    """Set only when the test ends: a stand-in waiting on it never answers while the test runs,
    however loaded the machine (a fixed sleep could outlast the client's timeout or not)."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    """A threaded stand-in (a slow answer must not hold up the others)."""
    httpserver = HTTPServer(threaded=True)
    httpserver.start()
    yield httpserver
    httpserver.clear()
    if httpserver.is_running():
        httpserver.stop()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def base_url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")


def echo_page(request: Request, title: str) -> str:
    """What an indiscreet proxy or framework error page shows: URL, query and headers (first,
    so that they are inside the 200 characters the platform quotes from an error body)."""
    headers = "".join(f"<li>{k}: {v}</li>" for k, v in request.headers.items())
    return (
        f"<html><body><p>{request.method} {request.full_path}</p><h1>{title}</h1>"
        f"<ul>{headers}</ul><p>{request.url}</p><p>args: {dict(request.args)!r}</p></body></html>"
    )


def html(request: Request, status: int, title: str, **headers: str) -> Response:
    return Response(
        echo_page(request, title), status=status, content_type="text/html", headers=headers
    )


def as_json(body: object, status: int = 200, **headers: str) -> Response:
    return Response(
        json.dumps(body), status=status, content_type="application/json", headers=headers
    )


class CallCounter:
    """How often the stand-in saw each key (thread-safe: the server is threaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def __call__(self, key: str) -> int:
        with self._lock:
            self._counts[key] += 1
            return self._counts[key]


def serve(server: HTTPServer, handler: Callable[[Request], Response]) -> list[Request]:
    """Answer every path with ``handler``; the returned list fills with the requests seen."""
    seen: list[Request] = []

    def record(request: Request) -> Response:
        seen.append(request)
        return handler(request)

    server.clear()
    server.expect_request(re.compile(".*")).respond_with_handler(record)
    return seen


def assert_nothing_leaked(platform: Platform, caplog, capfd, *, extra_dirs: Iterable[Path] = ()):
    """No form of any key in the captured records and streams, the instance, or under tmp_path
    (DATA_DIR: warehouse, objects, archives; DAGSTER_HOME: SQLite storage, compute logs)."""
    out, err = capfd.readouterr()
    records = [r for r in caplog.records if not r.name.startswith(STAND_IN_LOGGERS)]
    assert records, "no log record was captured: nothing to search"
    leaks = SCANNER.in_logs(records, out, err)
    leaks += SCANNER.in_instance(platform.instance)
    leaks += SCANNER.in_files(platform.root, *extra_dirs)
    listed = [f"{n} x {leak}" for leak, n in Counter(leaks).most_common(40)]
    assert not leaks, f"{len(leaks)} secret sightings:\n" + "\n".join(listed)


def stored_env_var_names(instance: dg.DagsterInstance) -> set[str]:
    """Variable names the stored job snapshots refer to as ``{"env": NAME}``: where a key given
    as a plain string would be stored instead (see the self-check below)."""
    texts = (text for where, text in instance_texts(instance) if where.startswith("job snapshot"))
    return {name for text in texts for name in re.findall(r'\{\\"env\\": \\"(\w+)\\"\}', text)}


def archived_text(platform: Platform) -> str:
    archives = sorted((platform.root / "data" / "objects").rglob("*.jsonl.gz"))
    assert archives, "no raw payload archive was written"
    return "\n".join(gzip.decompress(path.read_bytes()).decode() for path in archives)


def error_text(result, step: str | None = None) -> str:
    """The messages of the run's step failures, with their causes and contexts."""
    failures = [e for e in result.all_events if e.is_step_failure and step in (None, e.step_key)]
    assert failures, f"no step failure{f' for {step}' if step else ''}"
    messages, errors = [], [e.step_failure_data.error for e in failures]
    while errors:
        error = errors.pop()
        if error is not None:
            messages.append(error.message)
            errors += [error.cause, error.context]
    return "\n".join(messages)


def secrets_job(assets: str, selection: list[str], scenario: str) -> dg.JobDefinition:
    """A job over one group's assets, rebuilt by ``dg.execute_job`` from this module.

    Used where a step retry policy would otherwise wait tens of seconds between attempts:
    ``execute_in_process`` (``dg.materialize``) always retries, a real executor can be told
    not to (``NO_STEP_RETRIES``). Dagster caches a rebuilt job by its arguments, so each
    ``scenario`` (environment) needs its own name, or the first one's resources are reused.
    """
    from definitions import build_resources

    defs = {"esios": ESIOS_ASSETS, "nasa": [*NASA_ASSETS, *NASA_CHECKS]}[assets]
    job = dg.define_asset_job(
        "secrets_job", selection=selection, executor_def=dg.in_process_executor
    )
    return dg.Definitions(
        assets=defs, jobs=[job], resources=build_resources(load_settings())
    ).resolve_job_def("secrets_job")


def execute(instance, assets: str, selection: list[str], partition: str, scenario: str):
    """Run ``secrets_job`` in this process with step retries off; ``scenario`` plus this test's
    DATA_DIR name the environment it was built in."""
    scenario = f"{scenario} in {os.environ['DATA_DIR']}"
    kwargs = {"assets": assets, "selection": selection, "scenario": scenario}
    job = dg.build_reconstructable_job(__name__, "secrets_job", reconstructable_kwargs=kwargs)
    return dg.execute_job(
        job, instance, run_config=NO_STEP_RETRIES, tags={"dagster/partition": partition}
    )


# -- OpenWeatherMap ---------------------------------------------------------------------------


SOMETIMES_WRONG = ("500-once", "429-once", "html-once")


def onecall(
    behaviour: Callable[[str], str], stalled: threading.Event | None = None
) -> Callable[[Request], Response]:
    """One Call 3.0 stand-in; ``behaviour(lat)`` picks ok, 500-once, 429-once, html-once, html
    (every time), stalled (no answer until ``stalled`` is set) or reject for the coordinate."""
    calls = CallCounter()

    def handle(request: Request) -> Response:
        lat, appid = request.args["lat"], request.args.get("appid", "")
        kind, n = behaviour(lat), calls(lat)
        if kind == "reject":
            message = f"Invalid API key {appid}. Please see https://openweathermap.org/faq#error401"
            return as_json({"cod": 401, "message": message}, 401)
        if kind == "500-once" and n == 1:
            return html(request, 500, "500 Internal Server Error")
        if kind == "429-once" and n == 1:
            message = f"Your account {appid} is temporary blocked due to exceeding of requests"
            return as_json({"cod": 429, "message": message}, 429, **{"Retry-After": "0"})
        if kind == "html" or (kind == "html-once" and n == 1):
            return html(request, 200, "Service temporarily unavailable")
        if kind == "stalled":
            assert stalled is not None
            stalled.wait(timeout=120)
        first = int(datetime.now(UTC).timestamp()) // 60 * 60 + 60  # the next full minute
        minutely = [{"dt": first + 60 * i, "precipitation": 0.6} for i in range(61)]
        return as_json({"lat": float(lat), "lon": 5.1, "timezone": "Etc/GMT", "minutely": minutely})

    return handle


def rain_run(platform: Platform, resources, **config):
    return dg.materialize(
        [*RAIN_ASSETS, *RAIN_CHECKS],
        resources=resources,
        instance=platform.instance,
        partition_key=datetime.now(UTC).strftime(MINUTE_FORMAT),  # live: the current minute only
        run_config={"ops": {"rain_forecasts": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def quick_onecall(url: str) -> OpenWeatherMapResource:
    """The live resource as definitions.py wires it, with a short timeout and two attempts
    (1 s: ample for the stand-in's immediate answers on a loaded machine)."""
    key = dg.EnvVar("OPENWEATHERMAP_API_KEY")
    return OpenWeatherMapResource(
        source=SourceConfig(mode="live"), base_url=url, api_key=key, timeout_s=1.0, max_attempts=2
    )


def test_openweathermap_keys_leak_nowhere(platform, server, caplog, capfd, stalled):
    env = platform.monkeypatch
    env.setenv("OPENWEATHERMAP_BASE_URL", base_url(server))

    # 1. Two keys (OPENWEATHERMAP_API_KEYS), two shards of 20 calls a minute; three of the
    # second key's coordinates first answer 500, 429 (Retry-After: 0) and an HTML page.
    lats = [50.0 + i / 100 for i in range(24)]
    special = {f"{lat:.6f}": kind for lat, kind in zip(lats[20:], SOMETIMES_WRONG, strict=False)}
    seen = serve(server, onecall(lambda lat: special.get(lat, "ok")))
    platform.locations("many", lats)
    env.setenv("OPENWEATHERMAP_API_KEYS", ",".join(OWM_KEYS))
    env.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "20")
    result = rain_run(platform, platform.resources())
    assert result.success
    meta = result.asset_materializations_for_node("rain_forecasts")[0].metadata
    assert (meta["shards"].value, meta["failed_coordinates"].value) == (2, 0)
    assert meta["http_retries"].value == 3
    assert {r.args["appid"] for r in seen} == set(OWM_KEYS)
    assert any(quote_plus(OWM_KEYS[1]) in r.query_string.decode() for r in seen)  # encoded

    # 2. One key (OPENWEATHERMAP_API_KEY), rejected with a message that repeats it.
    env.delenv("OPENWEATHERMAP_API_KEYS")
    env.setenv("OPENWEATHERMAP_API_KEY", OWM_KEY)
    env.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "60")
    platform.locations("few", lats[:3])
    seen = serve(server, onecall(lambda lat: "reject"))
    result = rain_run(platform, platform.resources())
    assert not result.success
    rejected = error_text(result)
    assert "OPENWEATHERMAP_API_KEY was rejected by OpenWeatherMap (HTTP 401" in rejected
    assert "Invalid API key ***" in rejected
    assert {r.args["appid"] for r in seen} == {OWM_KEY}

    # 3. One coordinate that never answers (1 s timeout), one answering HTML every time: both
    # kept without a nowcast, their errors logged and archived with the raw payloads.
    forever = {f"{lats[1]:.6f}": "stalled", f"{lats[2]:.6f}": "html"}
    serve(server, onecall(lambda lat: forever.get(lat, "ok"), stalled))
    quick = quick_onecall(base_url(server))
    result = rain_run(platform, platform.resources(openweathermap=quick), max_failed_share=0.7)
    assert result.success
    meta = result.asset_materializations_for_node("rain_forecasts")[0].metadata
    assert meta["failed_coordinates"].value == 2
    assert meta["http_retries_by_reason"].value == {"malformed body": 1, "timeout": 1}
    archived = archived_text(platform)  # the stand-in repeated the key; it was redacted
    assert "did not answer within 1 s" in archived and "appid=***" in archived

    # 4. Nothing listens: connection refused on every attempt, the minute fails.
    refused = quick_onecall(closed_port_url())
    result = rain_run(platform, platform.resources(openweathermap=refused))
    assert not result.success
    assert "OpenWeatherMap could not be reached" in error_text(result)

    names = stored_env_var_names(platform.instance)
    assert {"OPENWEATHERMAP_API_KEYS", "OPENWEATHERMAP_API_KEY"} <= names
    assert_nothing_leaked(platform, caplog, capfd)


# -- ESIOS ------------------------------------------------------------------------------------


def indicator(script: list[str]) -> Callable[[Request], Response]:
    """ESIOS stand-in: answers in the order of ``script`` (then OK), every one repeating the
    x-api-key header it received."""
    calls = CallCounter()

    def handle(request: Request) -> Response:
        n, token = calls("all"), request.headers.get("x-api-key", "")
        kind = script[n - 1] if n <= len(script) else "ok"
        if kind == "500":
            return html(request, 500, "502 Bad Gateway")
        if kind == "429":
            return as_json(
                {"message": f"Too many requests for {token}"}, 429, **{"Retry-After": "0"}
            )
        if kind == "html":
            return html(request, 200, "Mantenimiento")
        if kind == "reject":
            return Response(f"HTTP Token: Access denied. ({token})", 401, content_type="text/plain")
        start, end = (
            datetime.fromisoformat(request.args[name]).replace(tzinfo=MADRID)
            for name in ("start_date", "end_date")
        )
        return as_json(indicator_460_payload(start, end))

    return handle


def test_esios_token_leaks_nowhere(platform, server, caplog, capfd):
    env = platform.monkeypatch
    env.setenv("ESIOS_BASE_URL", base_url(server))
    env.setenv("ESIOS_API_TOKEN", ESIOS_TOKEN)

    # 1. 500 (an HTML page), 429 with Retry-After: 0, an HTML page with HTTP 200, then the month.
    seen = serve(server, indicator(["500", "429", "html"]))
    checks = [esios_hours_complete, esios_no_duplicate_hours, esios_values_plausible, esios_schema]
    result = dg.materialize(
        [*ESIOS_ASSETS, *checks],
        selection=[esios_demand_forecast, *checks],
        resources=platform.resources(),
        instance=platform.instance,
        partition_key="2017-01-01",
    )
    assert result.success
    assert len(seen) == 4 and {r.headers["x-api-key"] for r in seen} == {ESIOS_TOKEN}

    # 2. The token is rejected (ESIOS's plain-text refusal, plus the token).
    serve(server, indicator(["reject"] * 10))
    result = execute(platform.instance, "esios", ["esios_demand_forecast"], "2017-02-01", "reject")
    assert not result.success
    rejected = error_text(result)
    assert "ESIOS_API_TOKEN was rejected by ESIOS (HTTP 401" in rejected
    assert "Access denied. (***)" in rejected
    assert "ESIOS_API_TOKEN" in stored_env_var_names(platform.instance)

    assert_nothing_leaked(platform, caplog, capfd)


# -- NASA -------------------------------------------------------------------------------------

NASA_PAGES = [["MOON-A", "MOON-B", "BAD"], ["MOON-C", "MOON-D"]]


def library(server: HTTPServer, *, reject: bool = False) -> Callable[[Request], Response]:
    """Both NASA hosts: search (2 pages, echoing the query in its links as NASA does), manifests,
    images. Page 1 first answers 503 (Retry-After: 0), MOON-B's manifest 500 once, BAD's is a 404
    page; a rejected key gets api.nasa.gov's JSON error, repeating it."""
    calls = CallCounter()

    def handle(request: Request) -> Response:
        key = request.args.get("api_key", "")
        if reject:
            message = f"An invalid api_key was supplied: {key}. Get one at https://api.nasa.gov"
            return as_json({"error": {"code": "API_KEY_INVALID", "message": message}}, 403)
        path = request.path
        if path == "/search":
            page = int(request.args["page"])
            if page == 1 and calls("search") == 1:
                return html(request, 503, "503 Service Unavailable", **{"Retry-After": "0"})
            items = [
                {
                    "href": server.url_for(f"/image/{i}/collection.json"),
                    "data": [{"nasa_id": i, "title": f"Moon {i}", "media_type": "image"}],
                }
                for i in NASA_PAGES[page - 1]
            ]
            links = [{"rel": "next", "href": request.url.replace("page=1", "page=2")}]
            collection = {"version": "1.0", "href": request.url, "items": items}
            collection |= {"metadata": {"total_hits": 5}, "links": links if page == 1 else []}
            return as_json({"collection": collection})
        if path.startswith("/asset/"):
            nasa_id = path.rsplit("/", 1)[1]
            if nasa_id == "BAD":
                return html(request, 404, "404 Not Found")
            if nasa_id == "MOON-B" and calls(nasa_id) == 1:
                return html(request, 500, "500 Internal Server Error")
            href = server.url_for(f"/image/{nasa_id}/{nasa_id}~large.png")
            return as_json({"collection": {"href": request.url, "items": [{"href": href}]}})
        nasa_id = path.split("/")[2]
        return Response(png_bytes(32, 24, nasa_id), content_type="image/png")

    return handle


def test_nasa_key_leaks_nowhere(platform, server, caplog, capfd):
    from tests.weather_assets.conftest import shared_spark_session

    shared_spark_session()  # getOrCreate in the asset then picks this local[1] session
    env = platform.monkeypatch
    env.setenv("NASA_IMAGES_BASE_URL", base_url(server))
    env.setenv("NASA_API_KEY", NASA_KEY)
    platform.instance.add_dynamic_partitions("nasa_queries", ["moon", "mars"])

    # 1. Search with a 503 retry, downloads with a 500 retry and a 404: one item of five
    # failed, above the 10% tolerated, so nasa_images fails with its failure table.
    seen = serve(server, library(server))
    spark = LazyPySparkResource(spark_config={"spark.master": "local[1]"})
    result = dg.materialize(
        [*NASA_ASSETS, *NASA_CHECKS],
        partition_key="moon",
        resources=platform.resources(pyspark=spark),
        instance=platform.instance,
        run_config={"ops": {"nasa_images": {"config": {"tasks": 1}}}},
        raise_on_error=False,
    )
    search = result.asset_materializations_for_node("nasa_search_results")[0].metadata
    assert search["dagster/row_count"].value == 5 and search["api_requests"].value == 3
    assert "1 of 5 downloads failed" in error_text(result, "nasa_images")
    failures = (platform.root / "data/objects/dagster/nasa/moon/failures.json").read_text()
    assert "HTTP 404" in failures and "api_key=***" in failures
    keyed = [r for r in seen if r.path == "/search" or r.path.startswith("/asset/")]
    assert keyed and all(r.args["api_key"] == NASA_KEY for r in keyed)
    assert all(quote_plus(NASA_KEY) in r.query_string.decode() for r in keyed)

    # 2. The key is rejected.
    serve(server, library(server, reject=True))
    result = execute(platform.instance, "nasa", ["nasa_search_results"], "mars", "reject")
    assert not result.success
    rejected = error_text(result)
    assert "NASA_API_KEY was rejected by NASA Image Library (HTTP 403" in rejected
    assert "An invalid api_key was supplied: ***" in rejected
    assert "NASA_API_KEY" in stored_env_var_names(platform.instance)

    assert_nothing_leaked(platform, caplog, capfd, extra_dirs=spark_local_dirs())


# -- the scanner can fail ---------------------------------------------------------------------

PLANTED = "sk-FAKE-planted+4be07d9c13af/="


def test_the_scanner_finds_a_planted_key_in_every_form_and_format(tmp_path):
    scanner = Scanner.for_secrets(PLANTED)
    (tmp_path / "clean.txt").write_text("GET /data/3.0/onecall?appid=*** HTTP/1.1")
    assert scanner.in_files(tmp_path) == []

    plants = {
        "raw.log": PLANTED.encode(),
        "encoded.log": f"GET /search?q=moon&api_key={quote_plus(PLANTED)}".encode(),
        "lower.log": _percent_lower(quote(PLANTED, safe="")).encode(),
        "truncated.log": (PLANTED[:28] + "...").encode(),
        "archive.jsonl.gz": gzip.compress(json.dumps({"error": PLANTED}).encode()),
        "pickled.b64": base64.b64encode(b"xx" + pickle.dumps({"api_key": PLANTED})),
    }
    for name, data in plants.items():
        (tmp_path / name).write_bytes(data)
    pq.write_table(
        pa.table({"href": [f"https://x/?k={PLANTED}"] * 500}),
        tmp_path / "rows.parquet",
        compression="gzip",
        write_statistics=False,  # min/max would repeat the value uncompressed
    )
    with sqlite3.connect(tmp_path / "snapshots.db") as conn:
        conn.execute("create table snapshots (body blob)")
        conn.execute("insert into snapshots values (?)", [zlib.compress(PLANTED.encode() * 50)])
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("create schema weather")
        conn.execute(
            "create table weather.t as select 'key ' || ? || i as v from range(50000) r(i)",
            [PLANTED],
        )
        conn.execute("checkpoint")

    found = {hit.split(" [")[0].rsplit("/", 1)[1] for hit in scanner.in_files(tmp_path)}
    assert found == {*plants, "rows.parquet", "snapshots.db", "warehouse.duckdb"}
    # The compressed formats are found by decoding, not by luck in the raw bytes.
    for name in ("archive.jsonl.gz", "rows.parquet", "snapshots.db"):
        assert not scanner.find((tmp_path / name).read_bytes()), name


def test_the_scanner_finds_a_key_in_logs_and_in_the_instance(tmp_path, caplog, capfd):
    """A key logged by an asset lands in a Python log record, on stderr (Dagster's console log)
    and in an event; a key given to a resource as a plain string (not ``dg.EnvVar``) lands in
    the stored job snapshot. The scanner sees each."""
    scanner = Scanner.for_secrets(PLANTED)
    caplog.set_level(logging.DEBUG)

    @dg.asset
    def careless(context: dg.AssetExecutionContext, nasa_library: NasaImagesResource) -> None:
        url = f"/search?api_key={quote_plus(nasa_library.api_key or '')}"
        context.log.warning(f"calling {url}")
        logging.getLogger("resources.http").debug("calling %s", url)

    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        raw_string = NasaImagesResource(api_key=PLANTED)
        result = dg.materialize(
            [careless], resources={"nasa_library": raw_string}, instance=instance
        )
        assert result.success
        in_instance = scanner.in_instance(instance)
    assert any(hit.startswith("event ") for hit in in_instance)
    assert any(hit.startswith("job snapshot") for hit in in_instance)
    assert scanner.in_logs(caplog.records)
    assert scanner.in_logs([], capfd.readouterr().err)
    assert any("sqlite rows" in hit for hit in scanner.in_files(home))


def test_the_spark_task_with_the_nasa_key_stays_out_of_the_py4j_trace(tmp_path, caplog):
    """The closure nasa_images ships to Spark holds the key (the workers call the API); py4j's
    DEBUG trace would print it, base64-encoded, without resources/spark.py's filter."""
    from nasa_assets.download import DownloadJob, download_partition
    from resources.object_store import ObjectStoreSpec
    from tests.weather_assets.conftest import shared_spark_session

    sc = shared_spark_session().sparkContext
    spec = NasaImagesResource(source=SourceConfig(mode="live"), api_key=PLANTED).spec()
    job = DownloadJob(spec, ObjectStoreSpec(None, "p", None, str(tmp_path)), query="moon")
    caplog.set_level(logging.DEBUG)
    sc.parallelize([], 1).mapPartitionsWithIndex(
        lambda index, part: download_partition(job, index, part)
    ).collect()
    # The wire trace was captured (the channel the key would leak through), so the search
    # below cannot pass on an empty or py4j-less capture.
    trace = [r for r in caplog.records if r.name.startswith("py4j") and r.levelno == logging.DEBUG]
    assert any(r.getMessage().startswith("Command to send") for r in trace), (
        "no py4j DEBUG command record was captured: nothing to search"
    )
    assert not Scanner.for_secrets(PLANTED).in_logs(caplog.records)


def test_urllib3_request_lines_keep_the_path_but_not_the_query(server, caplog, monkeypatch):
    """urllib3 logs each request line at DEBUG, query string (API keys) included; the shared
    HTTP base strips the query from urllib3's records, wherever they are handled."""
    from resources.http import HttpClient

    for name in STAND_IN_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "disabled", True)
    caplog.set_level(logging.DEBUG)
    server.expect_request("/data/3.0/onecall").respond_with_json({"ok": True})
    with HttpClient(service="OpenWeatherMap", base_url=base_url(server)) as client:
        client.get_json("/data/3.0/onecall", params={"lat": "52", "appid": PLANTED})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any('"GET /data/3.0/onecall?*** HTTP/1.1" 200' in line for line in lines)
    assert not Scanner.for_secrets(PLANTED).in_logs(caplog.records)
