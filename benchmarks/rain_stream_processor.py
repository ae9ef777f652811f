"""The rain stream processor on ``local[2]``: throughput and lag at 10,000 and 100,000
coordinates a minute replayed into the log.

    .venv/bin/python benchmarks/rain_stream_processor.py [--coordinates 10000,100000] [--minutes 3]

For each size, a fresh embedded nats-server and a fresh processor
(``python -m weather_assets.rain.stream.processor``, ``SPARK_MASTER=local[2]``, default batch
settings, its own process as under ``make run``):

1. the minutes' messages are made in advance, as producers publish them
   (``messages.nowcast_message`` around the simulator's ``onecall_json`` answer, ~2.5 KB each,
   one end marker per shard of 1,000);
2. **real time**: at each of ``--minutes`` minute boundaries the minute's messages are published
   as fast as the log takes them (``minute_fetch.publish``: the burst after a boundary, the
   hardest case); the processor's state (``rain_processor``, written when a batch is fully
   processed) is polled every 0.2 s. Lag of a message = when the state first covers its
   sequence - when its publish was acknowledged; reported as max and p50 per size.
   Target: 100,000 coordinates a minute with lag under 30 s.
3. **catch-up**: the processor is stopped, two more minutes are published, and it is started
   again: the backlog comes in batches of at most ``maxMessagesPerBatch`` (50,000), and the
   messages per second of batch time after the first one (which also starts Spark's Python
   workers) is the processor's capacity, in coordinate-minutes/s.

Throughput figures come from the processor's own log lines (messages and seconds per batch).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from resources.jetstream import EmbeddedServer, jetstream
from weather_assets.locations import Location
from weather_assets.rain.simulator import onecall_json
from weather_assets.rain.stream.log import (
    PROCESSOR,
    LogConfig,
    data_subject,
    end_message_id,
    end_subject,
    ensure_log,
    message_id,
)
from weather_assets.rain.stream.messages import end_marker, nowcast_message
from weather_assets.rain.stream.minute_fetch import OutgoingMessage, publish

REPO = Path(__file__).resolve().parents[1]
SHARD = 1_000
TEMPLATES = 2_000
ANSWERED_AFTER = timedelta(seconds=2)
BATCH_LINE = re.compile(r"batch (\d+): .*?, (\d+) messages, .* ([\d.]+) s \(")


def locations(n: int) -> list[Location]:
    rng = np.random.default_rng(42)
    lats = rng.uniform(-55, 70, n).round(4)
    lons = rng.uniform(-180, 180, n).round(4)
    return [
        Location(f"loc{i:06d}", f"loc{i:06d}", float(lats[i]), float(lons[i])) for i in range(n)
    ]


def minute_messages(locs: list[Location], minute: datetime) -> list[OutgoingMessage]:
    """A minute as producers publish it: ``nowcast_message``'s envelope for every coordinate
    around a simulator answer (``onecall_json`` at the minute), one end marker per shard.

    Answers are made for ``TEMPLATES`` coordinates and shared round-robin (the simulator costs
    ~0.3 ms an answer; the processor's work per message does not depend on the numbers); the
    envelope, with each coordinate's own id and position, is built for every message, and the
    answer's bytes spliced in as its payload (checked equal to ``nowcast_message`` with the
    parsed payload on the first coordinate)."""
    shards = (len(locs) + SHARD - 1) // SHARD
    answered = minute + ANSWERED_AFTER
    answers = [onecall_json(loc.lat, loc.lon, answered) for loc in locs[:TEMPLATES]]
    out: list[OutgoingMessage] = []
    for shard in range(shards):
        mine = locs[shard * SHARD : (shard + 1) * SHARD]
        for i, loc in enumerate(mine, start=shard * SHARD):
            head = nowcast_message(
                loc,
                minute,
                shard=shard,
                shards=shards,
                producer="bench",
                answered_at=answered,
                error="-",
            )
            data = head[: -len(b',"error":"-"}')] + b',"payload":' + answers[i % TEMPLATES] + b"}"
            out.append(
                OutgoingMessage(
                    data_subject(minute, shard), message_id(loc.location_id, minute), data
                )
            )
        marker = end_marker(minute, shard=shard, shards=shards, count=len(mine), producer="bench")
        out.append(
            OutgoingMessage(
                end_subject(minute, shard), end_message_id(shard, shards, minute), marker
            )
        )
    loc = locs[0]
    reference = nowcast_message(
        loc,
        minute,
        shard=0,
        shards=shards,
        producer="bench",
        answered_at=answered,
        payload=json.loads(answers[0]),
    )
    assert json.loads(out[0].data) == json.loads(reference)
    return out


class StatePoller(threading.Thread):
    """``rain_processor`` ``state`` every 0.2 s: (wall time, last sequence processed)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        async def poll() -> None:
            while not self.stop.is_set():
                try:
                    async with jetstream(self.url, name="bench-poller") as (_, js):
                        kv = await js.key_value(PROCESSOR)
                        while not self.stop.is_set():
                            try:
                                entry = await kv.get("state")
                                self.samples.append(
                                    (time.time(), json.loads(entry.value)["last_seq"])
                                )
                            except Exception:
                                pass
                            await asyncio.sleep(0.2)
                except Exception:
                    await asyncio.sleep(0.5)

        asyncio.run(poll())

    def processed_at(self, seq: int) -> float | None:
        for moment, last in self.samples:
            if last >= seq:
                return moment
        return None


async def publish_timed(url: str, messages: list[OutgoingMessage], chunk: int = 5_000):
    """Publish in order; ``(last sequence, acknowledged at)`` per chunk."""
    stamps = []
    async with jetstream(url, name="bench-producer") as (_, js):
        for start in range(0, len(messages), chunk):
            report = await publish(js, messages[start : start + chunk])
            stamps.append((report.last_seq, time.time()))
    return stamps


def start_processor(work: Path, url: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env |= {
        "DATA_DIR": str(work / "data"),
        "NATS_URL": url,
        "SPARK_MASTER": "local[2]",
        "PYTHONPATH": str(REPO),
        "PYSPARK_PYTHON": sys.executable,
    }
    for name in (
        "S3_BUCKET",
        "S3_ENDPOINT_URL",
        "RAIN_CHECKPOINT_DIR",
        "RAIN_PROCESSOR_TEST_PAUSE",
    ):
        env.pop(name, None)
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(
        [sys.executable, "-m", "weather_assets.rain.stream.processor"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def batches(log_text: str, after_batch: int = -1) -> list[tuple[int, float]]:
    """(messages, seconds) of each of the processor's batch lines after ``after_batch``."""
    return [
        (int(m.group(2)), float(m.group(3)))
        for m in BATCH_LINE.finditer(log_text)
        if int(m.group(1)) > after_batch
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def next_boundary(margin_s: float) -> datetime:
    """The first minute boundary at least ``margin_s`` from now."""
    at = datetime.now(UTC) + timedelta(seconds=margin_s)
    return at.replace(second=0, microsecond=0) + timedelta(minutes=1)


def sleep_until(moment: datetime) -> None:
    delay = moment.timestamp() - time.time()
    if delay > 0:
        time.sleep(delay)


def run_size(n: int, minutes: int, work: Path) -> dict:
    locs = locations(n)
    server = EmbeddedServer(free_port(), work / "nats", log_path=work / "nats.log").start()
    url = server.url

    async def setup():
        async with jetstream(url) as (_, js):
            await ensure_log(js, LogConfig(url))

    asyncio.run(setup())
    log_path = work / "processor.log"
    processor = start_processor(work, url, log_path)
    poller = StatePoller(url)
    poller.start()
    result: dict = {"coordinates": n}
    try:
        # 1. warm-up: Spark's start and its Python workers' first imports are not the lag
        warm = minute_messages(locations(50), datetime.now(UTC).replace(second=0, microsecond=0))
        warm_last = asyncio.run(publish_timed(url, warm))[-1][0]
        if not wait_until(lambda: poller.samples and poller.samples[-1][1] >= warm_last, 300):
            raise RuntimeError(f"processor did not start; see {log_path}")
        time.sleep(1.0)  # its batch line follows the state by a moment
        warm_batches = max(int(m.group(1)) for m in BATCH_LINE.finditer(log_path.read_text()))

        # 2. real time: each minute published as a burst at its boundary
        stamps: list[tuple[int, float]] = []
        published: list[datetime] = []
        for _ in range(minutes):
            minute = next_boundary(margin_s=8.0)
            messages = minute_messages(locs, minute)
            sleep_until(minute)
            t = time.perf_counter()
            stamps += asyncio.run(publish_timed(url, messages))
            published.append(minute)
            print(
                f"  {minute:%H:%M}: published {len(messages):,} messages in "
                f"{time.perf_counter() - t:.1f} s",
                flush=True,
            )
        last_seq = stamps[-1][0]
        if not wait_until(lambda: poller.samples and poller.samples[-1][1] >= last_seq, 600):
            raise RuntimeError(f"processor did not catch up; see {log_path}")
        lags = [poller.processed_at(seq) - acked for seq, acked in stamps]
        result["lag_max_s"] = max(lags)
        result["lag_p50_s"] = float(np.median(lags))
        real_time_log = log_path.read_text()
        real_time_batches = batches(real_time_log, after_batch=warm_batches)
        result["realtime_batches"] = len(real_time_batches)
        result["realtime_messages"] = sum(m for m, _ in real_time_batches)
        result["realtime_busy_s"] = sum(s for _, s in real_time_batches)
        result["realtime_span_s"] = poller.processed_at(last_seq) - published[0].timestamp()

        # 3. catch-up: stop, publish two more minutes, start again
        processor.send_signal(signal.SIGTERM)
        processor.wait(timeout=120)
        last_batch = max(int(m.group(1)) for m in BATCH_LINE.finditer(log_path.read_text()))
        backlog: list[OutgoingMessage] = []
        for _ in range(2):
            minute = next_boundary(margin_s=5.0)
            batch = minute_messages(locs, minute)
            sleep_until(minute)  # published_at must not be before the messages' minute
            backlog += batch
        target = asyncio.run(publish_timed(url, backlog))[-1][0]
        processor = start_processor(work, url, log_path)
        if not wait_until(lambda: poller.samples and poller.samples[-1][1] >= target, 900):
            raise RuntimeError(f"processor did not drain the backlog; see {log_path}")
        time.sleep(1.0)
        drained = batches(log_path.read_text(), after_batch=last_batch)
        result["catchup_batches"] = drained
        warm = drained[1:]  # the first batch after a start also starts Spark's Python workers
        result["capacity_per_s"] = (
            sum(m for m, _ in warm) / sum(s for _, s in warm) if warm else None
        )
    finally:
        poller.stop.set()
        if processor.poll() is None:
            processor.send_signal(signal.SIGTERM)
            try:
                processor.wait(timeout=120)
            except subprocess.TimeoutExpired:
                processor.kill()
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinates", default="10000,100000")
    parser.add_argument("--minutes", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, cores={os.cpu_count()}"
    )
    for n in (int(x) for x in args.coordinates.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"rain_stream_{n}_"))
        print(f"{n:,} coordinates a minute, {args.minutes} minutes in real time (work dir {work})")
        r = run_size(n, args.minutes, work)
        print(
            f"  real time: lag max {r['lag_max_s']:.1f} s, p50 {r['lag_p50_s']:.1f} s (target: "
            f"max < 30 s); {r['realtime_messages']:,} messages in {r['realtime_batches']} "
            f"batches, {r['realtime_busy_s']:.1f} s busy over {r['realtime_span_s']:.0f} s = "
            f"{r['realtime_messages'] / r['realtime_busy_s']:,.0f} coordinate-minutes/s busy",
            flush=True,
        )
        drained = r["catchup_batches"]
        capacity = r["capacity_per_s"]
        print(
            f"  catch-up after a stop: {sum(m for m, _ in drained):,} messages in "
            f"{len(drained)} batches ({', '.join(f'{m:,} in {s:.1f} s' for m, s in drained)})"
            + (f" = {capacity:,.0f} coordinate-minutes/s after the first" if capacity else ""),
            flush=True,
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
