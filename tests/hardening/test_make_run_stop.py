"""Stopping ``make run`` leaves nothing behind (issue 16, item 4).

The real ``make run`` (the ESIOS backfill skipped: ``ESIOS_BACKFILL=0``) on free ports with a
temp DATA_DIR and DAGSTER_HOME, in a session of its own. Once Dagster's webserver, the web
service, the embedded NATS server, the producer and the Spark processor (its JVM included) are
up, it is stopped the way a user does: Ctrl-C (SIGINT to make's process group, as a terminal
sends it) or SIGTERM to make alone. Every process it started must be gone within 30 s, and the
next start's `make dagster-home` step leaves no run STARTED (the Ctrl-C case waits for a run in
progress to cut off).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing, suppress
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]
STOP_WITHIN_S = 30
UP_WITHIN_S = 300
PLATFORM_VARIABLES = (
    "NATS_URL", "SOURCE_MODE", "WAREHOUSE_PATH", "S3_BUCKET", "S3_BUCKET_NAME",
    "S3_ENDPOINT_URL", "LOCATIONS_FILE", "SQL_DATABASE_URL", "DAGSTER_PG_URL",
    "OPENWEATHERMAP_BASE_URL", "OPENWEATHERMAP_API_KEY", "OPENWEATHERMAP_API_KEYS",
)  # fmt: skip

IN_PROGRESS = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes(session: int) -> dict[int, tuple[str, str]]:
    """Live processes of a session, or descended from its leader: pid -> (start, cmdline)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            table[pid] = (fields, cmd)
    children: dict[int, list[int]] = {}
    for pid, (fields, _) in table.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = set(), [session, *(p for p, (f, _) in table.items() if int(f[3]) == session)]
    while todo:
        pid = todo.pop()
        if pid in found or pid not in table:
            continue
        found.add(pid)
        todo += children.get(pid, [])
    return {
        pid: (table[pid][0][19], table[pid][1][:160])
        for pid in found
        if table[pid][0][0] not in ("Z", "X")
    }


def _alive(pid: int, start: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _up(processes: dict[int, tuple[str, str]], dagster_port: int, serve_port: int) -> list[str]:
    """What is not up yet."""
    commands = [cmd for _, cmd in processes.values()]
    missing = [
        name
        for name, needle in (
            ("nats-server", "nats-server"),
            ("producer", "weather_assets.rain.stream.producer"),
            ("processor", "weather_assets.rain.stream.processor"),
            ("Spark JVM", "java"),
            ("dagster daemon", "dagster._daemon run"),
            ("code server", "dagster api grpc"),
        )
        if not any(needle in cmd for cmd in commands)
    ]
    if not _answers(f"http://127.0.0.1:{dagster_port}/server_info"):
        missing.append("dagster webserver")
    if not _answers(f"http://127.0.0.1:{serve_port}/openapi.json"):
        missing.append("web service")
    return missing


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c, started in the background", "sigterm"])
def test_stopping_make_run_stops_every_process_it_started(tmp_path, how) -> None:
    """``started in the background``: as ``make run &`` from a script, where a background job
    starts with SIGINT ignored (what let `dagster dev` survive SIGTERM and two SIGINTs)."""
    dagster_port, serve_port, nats_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_VARIABLES}
    env |= {
        "DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DAGSTER_PORT": str(dagster_port),
        "SERVE_PORT": str(serve_port),
        "NATS_PORT": str(nats_port),
        "SERVE_WORKERS": "1",
        "ESIOS_BACKFILL": "0",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "make_run.log"
    with log.open("w") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_ignore_sigint if "background" in how else None,
        )
    try:
        deadline = time.time() + UP_WITHIN_S
        while missing := _up(_processes(make.pid), dagster_port, serve_port):
            assert make.poll() is None, f"make run exited:\n{log.read_text()[-4000:]}"
            assert time.time() < deadline, f"not up after {UP_WITHIN_S} s: {missing}"
            time.sleep(2)
        if how == "ctrl-c":
            # Cut a run off: the first minute run (or a bootstrap run) in progress.
            with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                while not instance.get_runs(filters=IN_PROGRESS):
                    assert time.time() < deadline, "no run started"
                    time.sleep(1)
        started = _processes(make.pid)

        stopped_at = time.time()
        if how.startswith("ctrl-c"):
            os.killpg(make.pid, signal.SIGINT)
        else:
            os.kill(make.pid, signal.SIGTERM)
        while True:
            # Anything in the session, and any process seen before the stop (same pid and start
            # time) wherever it went.
            left = {pid: cmd for pid, (_, cmd) in _processes(make.pid).items()}
            left |= {pid: cmd for pid, (start, cmd) in started.items() if _alive(pid, start)}
            if not left:
                break
            assert time.time() - stopped_at < STOP_WITHIN_S, (
                f"{len(left)} processes still alive {STOP_WITHIN_S} s after {how}:\n"
                + "\n".join(f"{pid} {cmd}" for pid, cmd in sorted(left.items()))
                + f"\n--- make run's output:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        seconds = time.time() - stopped_at
        make.wait(timeout=10)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)
        for pid in _processes(make.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    print(f"{len(started)} processes, all gone {seconds:.1f} s after {how}")

    # The next start's first step: no run stays STARTED.
    step = subprocess.run(
        [sys.executable, "-m", "resources.run_worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert step.returncode == 0, step.stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_runs(filters=IN_PROGRESS) == [], step.stdout
