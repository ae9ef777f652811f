"""``kill -9`` of the stream processor in the middle of a batch, then a restart: every
(coordinate, minute) exactly once in the minute files and the real-time view, totals right.

``python -m weather_assets.rain.stream.processor`` runs as a child process three times on one
checkpoint: killed while batch 0 has written its minute files and nothing else, killed again
when the replayed batch 0 has written everything including the state (Spark not yet told), then
run to the end of the stream and stopped with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO
from tests.weather_assets.rain.stream.processor_helpers import (
    caught_up,
    expected_rows,
    past_minute,
    processor_state,
    publish_minute,
    realtime,
    stream_last_seq,
    test_locations,
    wait_for,
)
from weather_assets.rain.stream.messages import NOWCAST, latest_per_coordinate
from weather_assets.rain.stream.minute_store import minute_keys, read_minute
from weather_assets.rain.stream.processor import TEST_PAUSE_ENV

pytestmark = pytest.mark.integration  # a real nats-server and Spark

COORDINATES = 20
SHARD_SIZE = 10
START_S = 240.0  # a Spark start on a busy 2-core machine


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def _gone(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


class Processor:
    """One ``python -m weather_assets.rain.stream.processor`` child, its output in a file."""

    def __init__(self, tmp_path: Path, url: str, run: int, pause: str | None = None):
        self.log_path = tmp_path / f"processor-{run}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"S3_BUCKET", "S3_ENDPOINT_URL", "RAIN_CHECKPOINT_DIR", TEST_PAUSE_ENV}
        }
        env |= {
            "DATA_DIR": str(tmp_path / "data"),
            "NATS_URL": url,
            "SPARK_MASTER": "local[1]",
            "PYTHONPATH": str(REPO),
            "PYSPARK_PYTHON": sys.executable,
        }
        if pause:
            env[TEST_PAUSE_ENV] = pause
        command = [
            sys.executable,
            "-m",
            "weather_assets.rain.stream.processor",
            "--trigger-seconds",
            "0.5",
            "--max-messages-per-batch",
            "30",
            "--messages-per-partition",
            "15",
        ]
        with open(self.log_path, "wb") as log:
            # cwd away from the repo: a developer's .env must not reach the child
            self.process = subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout_s: float = START_S) -> None:
        def logged() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"processor exited early:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_for(logged, timeout_s, repr(text))

    def kill_9(self) -> None:
        """SIGKILL the Python driver; its JVM (and Spark's Python workers) go with it."""
        family = _children(self.process.pid)
        family += [grandchild for child in family for grandchild in _children(child)]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        wait_for(
            lambda: all(_gone(pid) for pid in family), 60, "the killed processor's JVM to exit"
        )

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def ensure_dead(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_kill_9_mid_batch_then_restart_gives_every_coordinate_minute_once(nats_server, tmp_path):
    url = nats_server.url
    locations = test_locations(COORDINATES)
    minutes = [past_minute(4), past_minute(3)]
    fetched = {m: publish_minute(url, m, locations, SHARD_SIZE)[0] for m in minutes}
    messages = sum(len(f.messages) for f in fetched.values())  # 2 x (20 + 2 end markers)
    runs: list[Processor] = []
    try:
        # 1. killed in batch 0 after its minute files, before anything in the log
        runs.append(Processor(tmp_path, url, 1, pause="files:300"))
        runs[-1].wait_for_line("test pause at files")
        runs[-1].kill_9()
        from resources.object_store import ObjectStore

        store = ObjectStore(local_dir=str(tmp_path / "data" / "objects"))
        assert minute_keys(store, minutes[0]), "batch 0 wrote its first minute's file"
        assert processor_state(url) is None

        # 2. batch 0 replayed, killed after the state is written, before Spark's commit
        runs.append(Processor(tmp_path, url, 2, pause="state:300"))
        runs[-1].wait_for_line("test pause at state")
        runs[-1].kill_9()
        state = processor_state(url)
        assert (state["batch_id"], state["last_seq"], state["messages_total"]) == (0, 30, 30)

        # 3. replays batch 0 again, reads the rest, and stops on SIGTERM
        runs.append(Processor(tmp_path, url, 3))
        wait_for(caught_up(url), START_S, "the restarted processor to reach the stream end")
        assert runs[-1].stop() == 0
    finally:
        for run in runs:
            run.ensure_dead()

    for run in runs[1:]:
        assert "batch 0: seq 1..30, 30 messages" in run.output()  # the same range again
    assert "stopped" in runs[-1].output()

    state = processor_state(url)
    assert state["last_seq"] == stream_last_seq(url) == messages
    assert state["messages_total"] == messages  # batch 0 counted once, not three times
    assert (state["dead_letters_total"], state["duplicates_total"]) == (0, 0)

    for minute in minutes:
        rows = read_minute(store, minute).filter(pl.col("kind") == NOWCAST)
        assert rows.height == COORDINATES and rows["location_id"].n_unique() == COORDINATES
        got = latest_per_coordinate(rows).sort("location_id")
        want = expected_rows(fetched[minute]).sort("location_id")
        compared = ["location_id", "next_hour_precipitation_mm", "minutes_covered", "forecast_at"]
        assert got.select(compared).equals(want.select(compared))

    latest = realtime(url)
    assert sorted(e["location_id"] for e in latest) == sorted(loc.location_id for loc in locations)
    assert {e["minute"] for e in latest} == {int(minutes[-1].timestamp())}
    want = expected_rows(fetched[minutes[-1]])
    by_id = dict(zip(want["location_id"], want["next_hour_precipitation_mm"], strict=True))
    assert {e["location_id"]: e["next_hour_precipitation_mm"] for e in latest} == by_id
