"""The producer service against a real nats-server: what one minute publishes, deduplication,
API faults, outages of the log, a rejected key, and two producers sharing (and taking over)
the shards.

The service tests run ``python -m weather_assets.rain.stream.producer`` as a subprocess. Those
that need minute boundaries use the test-only ``--clock`` (a clock 6x faster: a minute lasts
10 s) and ``--lease-ttl 10`` (one such minute), so a takeover takes seconds; with
``RAIN_STREAM_SLOW_TESTS=1`` the takeover test also runs on the real clock and 60 s leases.
Nothing asserts on wall time: tests wait (up to a generous deadline) for what the producers
log and publish, then check the log's content.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from nats.js.errors import NotFoundError

from resources.jetstream import jetstream
from resources.source import SourceConfig
from weather_assets.locations import Location, load_locations, shard_locations
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.rain.stream.leases import producer_health, read_holders
from weather_assets.rain.stream.log import LEASES, STREAM, LogConfig, minute_label
from weather_assets.rain.stream.messages import DEAD, END, NOWCAST, parse_messages, raw_frame
from weather_assets.rain.stream.minute_fetch import fetch_minute
from weather_assets.rain.stream.producer import Producer, ProducerClock, parse_args

REPO = Path(__file__).resolve().parents[4]
REGISTRY = REPO / "weather_assets" / "locations.csv"
# The documented One Call example's minute, where it rains at WET (tests/.../test_nowcast_window).
RAINY_MINUTE = datetime.fromtimestamp(1684929480, UTC)
WET = Location("wet", "Wet", 50.8236, -75.8806)
FAST_SCALE = 6.0  # a minute lasts 10 s
FAST_TTL_S = 10.0  # one fast minute
DEADLINE_S = 240.0  # only for a test that fails: none of the waits below takes that long


# --- helpers ------------------------------------------------------------------------------------


def write_locations(path: Path, locations: list[Location]) -> Path:
    lines = ["location_id,name,lat,lon"] + [
        f"{loc.location_id},{loc.name},{loc.lat},{loc.lon}" for loc in locations
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def stream_env(platform_env, nats_server, monkeypatch):
    """Offline platform settings (``platform_env`` first, so ``NATS_URL`` is the test server's),
    five coordinates in three shards (two calls per minute per key)."""
    locations = load_locations(REGISTRY)[:5]
    path = write_locations(platform_env / "locations.csv", locations)
    monkeypatch.setenv("LOCATIONS_FILE", str(path))
    monkeypatch.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "2")
    monkeypatch.delenv("SIMULATOR_FAULT_RATE", raising=False)
    return nats_server


def producer_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "weather_assets.rain.stream.producer", *args]


def run_once(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        producer_command("--once", *args),
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fixed_clock(minute: datetime, second: float = 1.0) -> str:
    """``--clock`` for a process started now: it believes it is ``second`` into ``minute``."""
    return f"{time.time():.3f},{minute.timestamp() + second:.3f},1"


def fast_clock(scale: float = FAST_SCALE) -> str:
    """A clock ``scale`` times faster, one hour behind the wall clock (so the log never holds a
    minute after its own time), shared by every producer a test starts."""
    now = time.time()
    return f"{now:.3f},{now - 3600:.3f},{scale:g}"


async def _read_log(url: str) -> pl.DataFrame:
    async with jetstream(url) as (_, js):
        info = await js.stream_info(STREAM)
        rows = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(STREAM, seq)
            except NotFoundError:
                continue
            stamp = msg.time.astimezone(UTC).replace(tzinfo=None) if msg.time else None
            rows.append((msg.seq, msg.subject, msg.data, stamp))
    return raw_frame(rows)


def read_log(url: str) -> pl.DataFrame:
    """Every message of the log, parsed by the one parser."""
    return parse_messages(asyncio.run(_read_log(url)))


def log_size(url: str) -> int:
    async def main():
        async with jetstream(url) as (_, js):
            return (await js.stream_info(STREAM)).state.messages

    return asyncio.run(main())


def health(url: str) -> dict[str, dict]:
    async def main():
        async with jetstream(url) as (_, js):
            return await producer_health(js)

    return {h["producer"]: h for h in asyncio.run(main())}


def holders(url: str, n_shards: int) -> dict[int, str]:
    async def main():
        async with jetstream(url) as (_, js):
            return await read_holders(await js.key_value(LEASES), n_shards)

    return {shard: holder for shard, (holder, _) in asyncio.run(main()).items()}


def minutes_of(parsed: pl.DataFrame) -> dict[datetime, dict]:
    """minute -> {shard: (end count, producer)} and coordinates published, per minute."""
    out: dict[datetime, dict] = {}
    for row in parsed.filter(pl.col("kind").is_in([NOWCAST, END])).iter_rows(named=True):
        minute = row["minute"].replace(tzinfo=UTC)
        entry = out.setdefault(minute, {"ends": {}, "coordinates": [], "producers": {}})
        if row["kind"] == END:
            assert row["shard"] not in entry["ends"], f"two end markers of {row['shard']}"
            entry["ends"][row["shard"]] = (row["count"], row["producer"])
        else:
            entry["coordinates"].append(row["location_id"])
            entry["producers"].setdefault(row["shard"], set()).add(row["producer"])
    return out


def assert_complete(minute_entry: dict, shards: list[list[Location]]) -> None:
    assert sorted(minute_entry["ends"]) == list(range(len(shards)))
    for i, shard in enumerate(shards):
        assert minute_entry["ends"][i][0] == len(shard)
    expected = sorted(loc.location_id for shard in shards for loc in shard)
    assert sorted(minute_entry["coordinates"]) == expected  # each exactly once


LINE = re.compile(
    r"minute=(?P<minute>\S+) shards=(?P<shards>[\d,]*)/(?P<n>\d+) messages=(?P<messages>\d+) "
    r"failures=(?P<failures>\d+) retries=(?P<retries>\S+) published=(?P<published>\d+) "
    r"duplicates=(?P<duplicates>\d+) buffered=(?P<buffered>\d+) dropped=(?P<dropped>\d+)"
)


@dataclass(frozen=True)
class Line:
    minute: datetime
    shards: tuple[int, ...]
    messages: int
    published: int
    duplicates: int
    buffered: int
    dropped: int


def minute_lines(text: str) -> list[Line]:
    lines = []
    for match in LINE.finditer(text):
        lines.append(
            Line(
                datetime.strptime(match["minute"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC),
                tuple(int(s) for s in match["shards"].split(",") if s),
                int(match["messages"]),
                int(match["published"]),
                int(match["duplicates"]),
                int(match["buffered"]),
                int(match["dropped"]),
            )
        )
    return lines


class Service:
    """A producer process writing its log to a file."""

    def __init__(self, tmp_path: Path, name: str, *args: str):
        self.name = name
        self.log_path = tmp_path / f"producer-{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            producer_command("--id", name, *args),
            cwd=REPO,
            env=dict(os.environ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log_path.read_text()

    def lines(self) -> list[Line]:
        return minute_lines(self.text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for(what: str, check, services: list[Service], deadline_s: float = DEADLINE_S):
    """Poll ``check()`` until it returns something truthy; a dead producer or the deadline
    fails the test with every producer's log."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        dead = [s for s in services if s.process.poll() is not None]
        if dead or time.monotonic() > end:
            logs = "\n".join(f"--- {s.name} ---\n{s.text()}" for s in services)
            why = f"{dead[0].name} exited" if dead else "deadline passed"
            raise AssertionError(f"waiting for {what}: {why}\n{logs}")
        time.sleep(0.2)


# --- one producer, one minute ---------------------------------------------------------------------


def test_once_publishes_every_coordinate_and_an_end_marker_per_shard(stream_env):
    url = stream_env.url
    shards = shard_locations(load_locations(os.environ["LOCATIONS_FILE"]), 2)
    assert [len(s) for s in shards] == [2, 2, 1]

    done = run_once("--id", "solo", "--clock", fixed_clock(RAINY_MINUTE))
    assert done.returncode == 0, done.stderr
    parsed = read_log(url)
    assert parsed.filter(pl.col("kind") == DEAD).is_empty()
    minutes = minutes_of(parsed)
    assert list(minutes) == [RAINY_MINUTE]
    assert_complete(minutes[RAINY_MINUTE], shards)
    assert {producer for _, producer in minutes[RAINY_MINUTE]["ends"].values()} == {"solo"}
    nowcasts = parsed.filter(pl.col("kind") == NOWCAST)
    assert nowcasts["error"].null_count() == nowcasts.height  # all answered
    assert nowcasts["minutes_covered"].to_list() == [60] * 5

    state = health(url)["solo"]
    assert state["last_minute"] == state["last_published_minute"] == RAINY_MINUTE.timestamp()
    assert state["messages"] == 8 and state["failures"] == 0
    assert state["dropped"] == state["publish_errors"] == state["buffered"] == 0
    assert state["shards"] == [] and state["stopped"] is True  # released on the way out
    assert state["pid"] > 0 and state["host"]
    assert holders(url, 3) == {}
    (line,) = minute_lines(done.stderr)
    assert (line.shards, line.published, line.duplicates) == ((0, 1, 2), 8, 0)

    # The same minute again (a takeover in mid-minute, a retry): nothing is added.
    size = log_size(url)
    again = run_once("--id", "solo", "--clock", fixed_clock(RAINY_MINUTE, second=20))
    assert again.returncode == 0, again.stderr
    assert log_size(url) == size
    (line,) = minute_lines(again.stderr)
    assert (line.published, line.duplicates) == (0, 8)


def test_once_without_a_log_says_so(platform_env):
    done = run_once("--id", "lonely")  # platform_env points NATS_URL at a closed port
    assert done.returncode == 1
    assert "is not reachable: nothing fetched" in done.stderr


def live_three_shards(monkeypatch) -> None:
    """Live mode keeps the station polls' share and one free call of each key: one station and
    four calls a minute leave two coordinates a key, the three shards of ``stream_env``."""
    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("OBSERVATION_STATIONS", "office")
    monkeypatch.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "4")


def test_a_rejected_key_stops_the_producer_and_frees_its_shards(
    stream_env, httpserver, monkeypatch
):
    httpserver.expect_request("/data/3.0/onecall").respond_with_json(
        {"cod": 401, "message": "Invalid API key. Please see https://openweathermap.org/faq"},
        status=401,
    )
    live_three_shards(monkeypatch)
    monkeypatch.setenv("OPENWEATHERMAP_API_KEYS", "k-secret-1,k-secret-2,k-secret-3")
    monkeypatch.setenv("OPENWEATHERMAP_BASE_URL", httpserver.url_for("/").rstrip("/"))
    done = run_once("--id", "badkey")
    assert done.returncode == 2, done.stderr
    assert "the One Call API rejected the key" in done.stderr
    assert "fix OPENWEATHERMAP_API_KEYS and restart" in done.stderr
    assert "k-secret" not in done.stderr
    assert holders(stream_env.url, 3) == {}
    assert health(stream_env.url)["badkey"]["stopped"] is True


def test_missing_live_keys_stop_before_starting(stream_env, monkeypatch):
    live_three_shards(monkeypatch)
    monkeypatch.setenv("OPENWEATHERMAP_API_KEY", "only-one")
    done = run_once("--id", "short")
    assert done.returncode == 2
    assert "3 shards of up to 2 coordinates need 3 API keys but 1 configured" in done.stderr
    assert "also pay for the station polls, 1 a minute" in done.stderr


def test_station_polls_that_leave_no_rain_calls_stop_before_starting(stream_env, monkeypatch):
    monkeypatch.setenv("SOURCE_MODE", "live")
    monkeypatch.setenv("OPENWEATHERMAP_API_KEY", "only-one")  # 2 a minute, 5 stations polled
    done = run_once("--id", "crowded")
    assert done.returncode == 2
    assert "no rain calls fit in a key: OPENWEATHERMAP_CALLS_PER_MINUTE=2 less 5 station polls" in (
        done.stderr
    )


# --- API faults -----------------------------------------------------------------------------------


def test_api_faults_are_retried_and_totals_match_a_fault_free_run(
    platform_env, nats_server, monkeypatch
):
    locations = [*load_locations(REGISTRY)[:39], WET]
    monkeypatch.setenv("LOCATIONS_FILE", str(write_locations(platform_env / "l.csv", locations)))
    monkeypatch.setenv("OPENWEATHERMAP_CALLS_PER_MINUTE", "100")  # room for the retries
    monkeypatch.setenv("SIMULATOR_FAULT_RATE", "0.2")
    done = run_once("--id", "flaky", "--clock", fixed_clock(RAINY_MINUTE))
    assert done.returncode == 0, done.stderr

    state = health(nats_server.url)["flaky"]
    assert sum(state["retries_by_reason"].values()) > 0  # 40+ calls at 20%: faults happened
    parsed = read_log(nats_server.url).filter(pl.col("kind") == NOWCAST)
    assert sorted(parsed["location_id"]) == sorted(loc.location_id for loc in locations)
    fetched = parsed.filter(pl.col("error").is_null())
    assert state["failures"] == parsed.height - fetched.height

    reference = fetch_minute(
        OpenWeatherMapResource(calls_per_minute=100),
        {0: locations},
        1,
        RAINY_MINUTE,
        producer="reference",
        now=lambda: RAINY_MINUTE + timedelta(seconds=1),
    )
    expected = parse_messages(reference.raw()).filter(pl.col("kind") == NOWCAST)
    columns = ["location_id", "next_hour_precipitation_mm", "minutes_covered"]
    got = fetched.select(columns).sort("location_id")
    want = expected.filter(pl.col("location_id").is_in(got["location_id"].to_list()))
    assert got.equals(want.select(columns).sort("location_id"))
    assert got.filter(pl.col("location_id") == "wet")["next_hour_precipitation_mm"][0] > 0


def test_a_coordinate_that_still_fails_is_an_error_record(platform_env, nats_server):
    locations = load_locations(REGISTRY)[:20]
    owm = OpenWeatherMapResource(
        source=SourceConfig(fault_rate=0.5), calls_per_minute=100, max_attempts=1
    )
    clock = ManualClock(RAINY_MINUTE + timedelta(seconds=1))
    producer = Producer("no-retries", owm, [locations], LogConfig(nats_server.url), clock=clock)

    async def main():
        report = await producer.run_minute(RAINY_MINUTE)
        await producer.shutdown()
        return report

    report = asyncio.run(main())
    assert 0 < report.failures < len(locations)  # 20 calls at 50% without retries
    parsed = read_log(nats_server.url)
    nowcasts = parsed.filter(pl.col("kind") == NOWCAST)
    assert sorted(nowcasts["location_id"]) == sorted(loc.location_id for loc in locations)
    errors = nowcasts.filter(pl.col("error").is_not_null())
    assert errors.height == report.failures
    assert errors["next_hour_precipitation_mm"].null_count() == errors.height
    (end,) = parsed.filter(pl.col("kind") == END).iter_rows(named=True)
    assert end["count"] == len(locations)  # error records count: never silently absent


# --- outages of the log -------------------------------------------------------------------------


@dataclass
class ManualClock:
    """A clock the test moves (``Producer`` reads ``now``, ``scale``, ``warped``)."""

    at: datetime
    scale: float = 1.0
    warped: bool = True

    def now(self) -> datetime:
        return self.at

    def real_seconds(self, seconds: float) -> float:
        return seconds


def test_outage_longer_than_the_buffer_drops_the_oldest_minutes(stream_env, caplog):
    url = stream_env.url
    shards = shard_locations(load_locations(os.environ["LOCATIONS_FILE"]), 2)
    clock = ManualClock(RAINY_MINUTE)
    producer = Producer(
        "buffered", OpenWeatherMapResource(calls_per_minute=2), shards, LogConfig(url),
        clock=clock, buffer_minutes=2,
    )  # fmt: skip
    minutes = [RAINY_MINUTE + timedelta(minutes=i) for i in range(6)]

    async def minute(i: int):
        clock.at = minutes[i] + timedelta(seconds=1)
        return await producer.run_minute(minutes[i])

    async def main():
        reports = [await minute(0)]
        await asyncio.to_thread(stream_env.stop)
        reports += [await minute(i) for i in (1, 2, 3, 4)]  # 1 and 2 are dropped
        await asyncio.to_thread(stream_env.start)
        reports.append(await minute(5))
        state = producer.health()
        await producer.shutdown()
        return reports, state

    reports, state = asyncio.run(main())
    assert [r.buffered for r in reports] == [0, 1, 2, 2, 2, 0]
    assert [r.dropped for r in reports] == [0, 0, 0, 1, 1, 0]
    assert reports[-1].published == 3 * 8
    assert state["dropped"] == 2 and state["dropped_messages"] == 16
    assert state["buffered"] == 0
    for dropped in minutes[1:3]:
        assert f"dropped minute {minute_label(dropped)} (8 messages)" in caplog.text
    logged = minutes_of(read_log(url))
    assert sorted(logged) == [minutes[i] for i in (0, 3, 4, 5)]
    for entry in logged.values():
        assert_complete(entry, shards)


def test_nats_restart_while_running_buffers_and_republishes(stream_env, tmp_path):
    url = stream_env.url
    shards = shard_locations(load_locations(os.environ["LOCATIONS_FILE"]), 2)
    service = Service(
        tmp_path, "p1", "--clock", fast_clock(), "--lease-ttl", f"{FAST_TTL_S:g}"
    )  # fmt: skip
    try:
        first = wait_for(
            "a published minute", lambda: [x for x in service.lines() if x.published], [service]
        )[0]
        stream_env.stop()
        wait_for(
            "two minutes buffered", lambda: any(x.buffered >= 2 for x in service.lines()), [service]
        )
        stream_env.start()

        def recovered():
            lines = service.lines()
            back = [i for i, x in enumerate(lines) if x.buffered == 0 and x.published > 8]
            return back and len(lines) > back[0] + 1  # and one more minute after it

        wait_for("the buffer re-published", recovered, [service])
        assert service.stop() == 0
    finally:
        service.kill()
    text = service.text()
    assert "unavailable" in text and "re-published buffered minute" in text
    assert "dropped minute" not in text
    lines = service.lines()
    assert all(x.dropped == 0 for x in lines)
    state = health(url)["p1"]
    assert state["dropped"] == 0 and state["buffered"] == 0 and state["stopped"] is True
    logged = minutes_of(read_log(url))
    assert lines[0] == first
    expected = [first.minute + timedelta(minutes=i) for i in range(len(lines))]
    assert [x.minute for x in lines] == expected  # no minute skipped while NATS was away
    assert sorted(logged) == expected  # and every one of them is in the log, complete
    for entry in logged.values():
        assert_complete(entry, shards)


# --- two producers ------------------------------------------------------------------------------


TAKEOVER_MODES = [
    pytest.param(("--clock", fast_clock, "--lease-ttl", f"{FAST_TTL_S:g}"), id="fast"),
    pytest.param(
        (),
        id="real-minutes",
        marks=pytest.mark.skipif(
            not os.environ.get("RAIN_STREAM_SLOW_TESTS"),
            reason="takes about 5 real minutes; set RAIN_STREAM_SLOW_TESTS=1",
        ),
    ),
]


@pytest.mark.parametrize("mode", TAKEOVER_MODES)
def test_two_producers_split_the_shards_and_survive_a_kill(stream_env, tmp_path, mode):
    url = stream_env.url
    shards = shard_locations(load_locations(os.environ["LOCATIONS_FILE"]), 2)
    args = [a() if callable(a) else a for a in mode]  # one shared clock for both
    a = Service(tmp_path, "a", *args)
    b = Service(tmp_path, "b", *args)
    services = [a, b]
    try:

        def both_fetch():
            mine_a = {x.minute for x in a.lines() if x.shards}
            return sorted(mine_a & {x.minute for x in b.lines() if x.shards})

        last_of_a = wait_for("a minute both producers fetched", both_fetch, services)[0]
        a.kill()  # kill -9, right after its minute: its leases expire within a TTL
        lines_a = a.lines()
        last_of_a = max(x.minute for x in lines_a)

        def b_holds_everything():
            full = [x.minute for x in b.lines() if len(x.shards) == len(shards)]
            later = [m for m in full if m > last_of_a]
            return later if len(later) >= 2 else None

        takeover = wait_for("b to take every shard", b_holds_everything, [b])[0]
        assert b.stop() == 0  # SIGTERM: leases released, exit 0
    finally:
        for service in services:
            service.kill()
    lines_b = b.lines()
    assert takeover <= last_of_a + timedelta(minutes=2)  # within two minutes

    # Only the lease holder fetches: no (minute, shard) twice, nothing deduplicated away.
    fetched_by = {}
    for name, lines in (("a", lines_a), ("b", lines_b)):
        for line in lines:
            assert line.duplicates == 0, (name, line)
            for shard in line.shards:
                assert (line.minute, shard) not in fetched_by, (name, line, fetched_by)
                fetched_by[line.minute, shard] = name

    logged = minutes_of(read_log(url))
    first = min(logged)
    for minute, entry in logged.items():
        for shard, (_, producer) in entry["ends"].items():
            assert fetched_by[minute, shard] == producer
        if minute <= last_of_a or minute >= takeover:
            assert_complete(entry, shards)  # someone held every shard
        else:  # between the kill and the takeover: only a's shards are missing
            a_shards = {s for x in lines_a if x.minute == last_of_a for s in x.shards}
            b_shards = {s for x in lines_b if x.minute == minute for s in x.shards}
            assert set(entry["ends"]) == b_shards
            assert set(range(len(shards))) - b_shards <= a_shards
    span = int((max(logged) - first).total_seconds()) // 60
    # Every minute since the start is in the log (those in between partly).
    assert sorted(logged) == [first + timedelta(minutes=i) for i in range(span + 1)]
    assert holders(url, len(shards)) == {}
    assert health(url)["b"]["stopped"] is True


def test_test_only_options_parse():
    args = parse_args(["--once", "--clock", "10,20,6", "--lease-ttl", "5", "--id", "x"])
    assert args.clock == ProducerClock(10.0, 20.0, 6.0) and args.lease_ttl == 5.0
    assert parse_args([]).clock is None and parse_args([]).buffer_minutes == 10
    with pytest.raises(SystemExit):
        parse_args(["--clock", "1,2"])
    with pytest.raises(SystemExit):
        parse_args(["--buffer-minutes", "0"])


def test_the_test_clock_runs_faster_from_its_anchor(monkeypatch):
    from resources import clock

    monkeypatch.setattr(clock, "utcnow", lambda: datetime.fromtimestamp(1_000.0 + 10, UTC))
    assert ProducerClock(1_000.0, 500.0, 6.0).now().timestamp() == 500.0 + 60
    assert ProducerClock().now() == clock.utcnow()
    assert ProducerClock(scale=6.0).real_seconds(60) == 10
