"""The rain stream's long-running services, started and watched together (``make run``).

``python -m weather_assets.rain.stream.services`` starts, in order: the embedded NATS server
(unless ``NATS_URL`` names one), the stream and its buckets, ``RAIN_PRODUCERS`` producers and
the Spark streaming processor. A service that exits is restarted after a back-off (so a crash
costs seconds, and the log keeps what the others publish meanwhile); SIGTERM or SIGINT stops
them all, processor and producers before the server. Each service can also be run on its own
(``python -m weather_assets.rain.stream.producer`` / ``.processor``), on other machines.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from resources.jetstream import (
    EmbeddedServer,
    LogUnavailable,
    embedded,
    nats_url_from,
    port_is_free,
    run_sync,
    server_command,
)
from resources.settings import Settings, dotenv_environ, load_settings
from weather_assets.rain.stream.log import LogConfig, ensure_log

log = logging.getLogger("rain.services")

MAX_BACKOFF_S = 30.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Service:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        log.info("starting %s: %s", self.name, " ".join(self.command[1:]))
        self.process = subprocess.Popen(self.command)
        self.started_at = time.monotonic()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killing it", self.name, timeout_s)
            self.process.kill()
            self.process.wait()


def services(settings: Settings) -> list[Service]:
    python = sys.executable
    producers = [
        Service(
            f"producer-{i}",
            [python, "-m", "weather_assets.rain.stream.producer", "--id", f"producer-{i}"],
        )
        for i in range(settings.rain_producers)
    ]
    processor = Service("processor", [python, "-m", "weather_assets.rain.stream.processor"])
    return [*producers, processor]


def backoff(restarts: int) -> float:
    """1, 2, 4, ... seconds, at most ``MAX_BACKOFF_S``."""
    return min(MAX_BACKOFF_S, 2.0 ** max(0, restarts - 1))


def supervise(children: list[Service], stopping: list[bool]) -> None:
    """Start the children and restart any that exits, until ``stopping``."""
    for child in children:
        child.start()
    while not stopping:
        now = time.monotonic()
        for child in children:
            code = child.process.poll() if child.process else None
            if child.process is not None and code is not None:
                # A service that ran for a while before failing starts its back-off afresh.
                if now - child.started_at > 5 * MAX_BACKOFF_S:
                    child.restarts = 0
                child.restarts += 1
                child.next_start = now + backoff(child.restarts)
                log.warning(
                    "%s exited with code %s; restarting in %.0f s",
                    child.name,
                    code,
                    child.next_start - now,
                )
                child.process = None
            elif child.process is None and now >= child.next_start:
                child.start()
        time.sleep(0.5)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with dotenv_environ():
        settings = load_settings()
    server: EmbeddedServer | None = None
    url = nats_url_from(settings)
    if embedded(settings):
        if not port_is_free(settings.nats_port):
            log.error(
                "port %s is taken: stop what listens there, set NATS_PORT to a free port, or set "
                "NATS_URL to use that server",
                settings.nats_port,
            )
            return 1
        server = EmbeddedServer(settings.nats_port, settings.data_dir / "nats")
        log.info("embedded NATS JetStream on %s, store %s", url, server.store_dir)
        log.debug(" ".join(server_command(server.port, server.store_dir)))
        server.start()
    try:
        info = run_sync(url, lambda js: ensure_log(js, LogConfig.from_settings(settings)))
    except LogUnavailable as exc:
        log.error("%s: start it, or fix NATS_URL", exc)
        if server is not None:
            server.stop()
        return 1
    log.info(
        "stream %s: %s messages, max age %.0f h",
        info.config.name,
        info.state.messages,
        (info.config.max_age or 0) / 3600,
    )
    stopping: list[bool] = []

    def stop(signum, frame) -> None:
        stopping.append(True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = services(settings)
    try:
        supervise(children, stopping)
    finally:
        for child in reversed(children):
            child.stop()
        if server is not None:
            server.stop()
        log.info("rain stream services stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
