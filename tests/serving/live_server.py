"""The real web service on a free 127.0.0.1 port, for the browser and load tests.

The app runs the way ``make serve`` runs it (``uvicorn``, lifespan on), but in a child process
rather than a thread of the test process: a test that materializes rain writes the DuckDB
warehouse from the test process, and DuckDB refuses a second connection to a file already open
*in the same process* with another configuration (read-only vs read-write: ``ConnectionException:
Can't open a connection to same database file with a different configuration``). Neither side
retries that, so an in-process server made most materializations fail. Across processes the
conflict is the ordinary file lock, which both the IO manager and the snapshot reader retry:
the situation in production, where Dagster runs and uvicorn workers are separate processes.

The app reads its settings (``DATA_DIR``, ``DASHBOARD_REFRESH_SECONDS``, ...) from the
environment when it starts, so set them (monkeypatch, ``platform_env``) before starting it.
With ``TEST_CLOCK_FILE`` set, the app's "now" (``resources.clock.utcnow``) is the moment last
written to that file with ``set_app_clock``, or the real time while there is none.
Starting costs seconds of imports (dagster, sklearn for the model); ``LiveApp`` does those
while the test prepares the data, and runs the lifespan only when told to serve.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
import pytest

if TYPE_CHECKING:
    import dagster as dg

REPO = Path(__file__).resolve().parents[2]
# Cleared like tests/conftest.py's platform_env: offline defaults, every path under DATA_DIR.
PLATFORM_VARIABLES = (
    "SOURCE_MODE", "OPENWEATHERMAP_API_KEY", "OPENWEATHERMAP_API_KEYS", "S3_BUCKET", "S3_PREFIX",
    "S3_ENDPOINT_URL", "WAREHOUSE_PATH", "LOCATIONS_FILE", "OPENWEATHERMAP_BASE_URL",
)  # fmt: skip
STARTUP_TIMEOUT_S = 60.0
CLOCK_FILE_ENV = "TEST_CLOCK_FILE"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    probe: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> T:
    """``probe()``'s first truthy value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or probe}")
        time.sleep(interval)


@contextmanager
def platform_env(data_dir: Path, **env: str) -> Iterator[None]:
    """``DATA_DIR`` (plus ``env``) set and the other platform variables cleared for the block,
    like tests/conftest.py's ``platform_env`` fixture but usable beyond one test."""
    with pytest.MonkeyPatch.context() as mp:
        for name in PLATFORM_VARIABLES:
            mp.delenv(name, raising=False)
        mp.setenv("DATA_DIR", str(data_dir))
        for name, value in env.items():
            mp.setenv(name, value)
        yield


def populated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``DATA_DIR`` ``dashboard_data.populate``d once per session (later calls reuse it)."""
    import dagster as dg

    from tests.serving.dashboard_data import populate

    template = tmp_path_factory.getbasetemp() / "populated-platform"
    if not (template / "done").exists():
        shutil.rmtree(template, ignore_errors=True)  # a half-made one (populate failed)
        with platform_env(template / "data"), dg.instance_for_test() as instance:
            populate(instance)
        (template / "done").touch()
    return template / "data"


@contextmanager
def populated_platform(
    tmp_path_factory: pytest.TempPathFactory, name: str, data_dir: Path | None = None, **env: str
) -> Iterator[dg.DagsterInstance]:
    """A module's own populated platform, for module-scoped fixtures (the ``platform_env`` and
    ``instance`` fixtures of tests/conftest.py are per test): a copy of the session's
    populated ``DATA_DIR`` (so one module's writes stay out of the others' data), set with
    ``env`` for as long as the block runs, and a Dagster instance for more materializations."""
    import dagster as dg

    data_dir = data_dir or tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(populated_template(tmp_path_factory), data_dir)
    with platform_env(data_dir, **env), dg.instance_for_test() as instance:
        yield instance


def install_file_clock(path: str | Path) -> None:
    """In the app's process: ``resources.clock.utcnow()`` becomes the moment in ``path``
    (written by ``set_app_clock``), or the real time while the file does not exist."""
    from resources import clock

    real_utcnow, file = clock.utcnow, Path(path)

    def utcnow() -> datetime:
        try:
            return datetime.fromisoformat(file.read_text())
        except FileNotFoundError:
            return real_utcnow()

    clock.utcnow = utcnow


def set_app_clock(path: Path, moment: datetime | None) -> None:
    """The "now" of an app started with ``TEST_CLOCK_FILE=path``; None: the real time again."""
    if moment is None:
        path.unlink(missing_ok=True)
        return
    temp = path.with_name(f"{path.name}.tmp")
    temp.write_text(moment.isoformat())
    os.replace(temp, path)  # atomic: the app never reads half a timestamp


# Imports what the app needs (the slow part), then waits for "serve <port>" on stdin.
LAUNCHER = f"""
import os
import sys
import uvicorn
import serving.app
import sklearn.ensemble  # unpickling the volume model imports it
if os.environ.get("{CLOCK_FILE_ENV}"):
    from tests.serving.live_server import install_file_clock
    install_file_clock(os.environ["{CLOCK_FILE_ENV}"])
line = sys.stdin.readline().split()
if line[:1] == ["serve"]:
    uvicorn.run("serving.app:create_app", factory=True, host="127.0.0.1", port=int(line[1]),
                log_level="warning", lifespan="on")
"""


class LiveApp:
    """``serving.app:create_app()`` under uvicorn in a child process (environment: this
    process's at construction, plus ``env``). Construction starts the imports; ``serve()``
    starts the server (lifespan first) and returns its base URL; ``stop()`` ends it."""

    def __init__(self, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            stdin=subprocess.PIPE,
            text=True,
        )
        self.url: str | None = None

    def serve(self) -> str:
        port = free_port()
        self.process.stdin.write(f"serve {port}\n")
        self.process.stdin.flush()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:  # uvicorn listens once the lifespan has started
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the app exited with code {self.process.returncode} while starting: "
                    "see its log above"
                )
            try:
                httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the app did not start within {STARTUP_TIMEOUT_S:g} s"
                    ) from None
                time.sleep(0.05)
        self.url = url
        return url

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.url is None:
                self.process.stdin.close()  # never served: the launcher exits
            else:
                self.process.terminate()  # uvicorn shuts down (lifespan included) on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()


@contextmanager
def running_app(**env: str) -> Iterator[str]:
    """Serve the app on a free 127.0.0.1 port; yield its base URL ("http://127.0.0.1:N")."""
    app = LiveApp(**env)
    try:
        yield app.serve()
    finally:
        app.stop()


@contextmanager
def live_platform(
    tmp_path_factory: pytest.TempPathFactory, name: str, **env: str
) -> Iterator[tuple[str, dg.DagsterInstance]]:
    """``populated_platform`` plus the app serving it: (base URL, Dagster instance). The
    app's imports run while the platform is populated."""
    data_dir = tmp_path_factory.mktemp(name) / "data"
    with platform_env(data_dir, **env):
        app = LiveApp()
        try:
            with populated_platform(tmp_path_factory, name, data_dir=data_dir) as instance:
                yield app.serve(), instance
        finally:
            app.stop()
