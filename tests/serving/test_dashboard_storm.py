"""The dashboard under load while the warehouse is being written or locked.

Requests never open DuckDB (``serving.warehouse_snapshot``): whatever a Dagster run does to the
file, every page answers from the last good snapshot, and the snapshot catches up afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import dagster as dg
import httpx
import pytest

from resources.settings import load_settings
from tests.serving.dashboard_data import BAD_REQUESTS as BAD
from tests.serving.dashboard_data import GOOD_REQUESTS as GOOD
from tests.serving.dashboard_data import materialize_rain
from tests.serving.live_server import live_platform, wait_for

pytestmark = pytest.mark.integration

PAGES = [*GOOD, *BAD]
THREADS = 8

# Holds DuckDB's write lock (like a Dagster run in the middle of a write) until stdin closes.
LOCK_HOLDER = """
import duckdb, sys, time
deadline = time.monotonic() + 30
while True:  # the server's snapshot reader may hold its shared lock for a moment
    try:
        conn = duckdb.connect(sys.argv[1])
        break
    except duckdb.IOException:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.02)
conn.execute("begin")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[str, dg.DagsterInstance]]:
    """A populated platform of the module's own, served (snapshot refreshed every 0.2 s)."""
    with live_platform(tmp_path_factory, "storm", DASHBOARD_REFRESH_SECONDS="0.2") as pair:
        yield pair


def rain_as_of(server: str) -> str:
    rows = httpx.get(f"{server}/rain", timeout=10).json()
    assert rows[0]["location_id"] == "office"
    return rows[0]["window_start"]


def test_request_storm_while_materializing(server, platform):
    """8 clients hammer every page and JSON route while three rain minutes are materialized:
    not one 5xx, every good request 200 and every bad one 422, and the snapshot moved on
    during the storm (a new X-Warehouse-Read-At, and the newest minute shown at the end)."""
    stop = threading.Event()
    statuses: Counter[tuple[str, int]] = Counter()
    read_at: set[str] = set()
    slowest = [0.0]
    failures: list[BaseException] = []
    lock = threading.Lock()

    def hammer(offset: int) -> None:
        try:
            with httpx.Client(base_url=server, timeout=30) as client:
                i = offset
                while not stop.is_set():
                    path = PAGES[i % len(PAGES)]
                    i += 1
                    started = time.perf_counter()
                    response = client.get(path)
                    elapsed = time.perf_counter() - started
                    with lock:
                        statuses[path, response.status_code] += 1
                        slowest[0] = max(slowest[0], elapsed)
                        if path == "/rain" and "x-warehouse-read-at" in response.headers:
                            read_at.add(response.headers["x-warehouse-read-at"])
        except BaseException as exc:
            failures.append(exc)

    def counted() -> bool:
        with lock:
            return sum(statuses.values()) >= 200 and len(read_at) >= 2

    before = rain_as_of(server)
    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        for minutes_ago in (0, 2, 3):
            materialize_rain(platform, minutes_ago=minutes_ago)
        # A storm of at least 200 requests over at least two snapshots, however slow the machine.
        wait_for(lambda: counted() or failures, timeout=60, what="200 requests, 2 snapshots")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures

    total = sum(statuses.values())
    print(f"\nstorm: {total} requests, slowest {slowest[0]:.3f} s, {dict(statuses)}")
    server_errors = {key: n for key, n in statuses.items() if key[1] >= 500}
    assert not server_errors
    unexpected = {
        key: n for key, n in statuses.items() if key[1] != (422 if key[0] in BAD else 200)
    }
    assert not unexpected
    assert total >= 200, f"only {total} requests in the storm"
    assert {path for path, _ in statuses} == set(PAGES)
    assert len(read_at) >= 2, f"the snapshot did not refresh during the storm: {read_at}"
    latest = wait_for(
        lambda: rain_as_of(server) != before and rain_as_of(server),
        timeout=10,
        what="the newest minute in /rain",
    )
    assert latest > before


def temperature_status(server: str) -> dict:
    response = httpx.get(f"{server}/temperature.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def test_pages_answer_while_another_process_holds_the_write_lock(server):
    """While another process holds DuckDB's write lock, every page still answers 200 with the
    data read before; /temperature.json (and the rain page) report the failed read once the
    reader gives up, the data shown being the last read before it; after the lock is released
    the error clears. That no request waits for the lock is asserted on what the handlers do,
    not on how long they take: test_dashboard_pages' test_no_request_opens_the_warehouse."""
    rain_before = httpx.get(f"{server}/rain", timeout=10).json()
    temperature_before = temperature_status(server)
    assert temperature_before["status"]["last_error"] is None
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(load_settings().warehouse_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        requests = 0
        deadline = time.monotonic() + 30
        error = None
        with httpx.Client(base_url=server, timeout=10) as client:
            while error is None:
                for path in GOOD:
                    response = client.get(path)
                    requests += 1
                    assert response.status_code == 200, path
                assert client.get("/rain").json() == rain_before
                data = client.get("/temperature.json").json()
                assert data["points"] == temperature_before["points"]
                assert data["model_version"] == "2026-11-21"
                error = data["status"]["last_error"]
                assert time.monotonic() < deadline, "the failed read was never reported"
                time.sleep(0.1)
            print(f"\nlock: {requests} requests under the lock")
            # Generic on the public page: DuckDB's own text names the file and the holder's PID.
            assert "busy" in error and f"PID {holder.pid}" not in error, error
            assert "warehouse.duckdb" not in error
            assert f"PID {holder.pid}" not in client.get("/").text
            # The pages show the last good read, made before the failed one.
            read_at, failed_at = (
                datetime.fromisoformat(data["status"][name])
                for name in ("warehouse_read_at", "last_error_at")
            )
            assert read_at < failed_at
            assert "Last warehouse read failed" in client.get("/").text
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    wait_for(
        lambda: temperature_status(server)["status"]["last_error"] is None,
        timeout=15,
        what="the error to clear after the lock is released",
    )
    assert "Last warehouse read failed" not in httpx.get(f"{server}/", timeout=10).text
