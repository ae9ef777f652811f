"""Concurrent backfills through the real run queue, and what they left behind (issue #8.2).

The platform as ``make run`` sets it up: a DAGSTER_HOME whose dagster.yaml is
dagster.yaml.template (run queue of 4, ``duckdb`` pool of 1 per op), a temp DATA_DIR, simulated
sources, and ``dagster-daemon run`` (run queue + backfill daemon) in its own process group.
Two backfills are submitted the way a user would, side by side, before the daemon starts:

- rain: ``dagster job backfill`` of minute partitions (one queued run per partition);
- ESIOS: an asset backfill of the three ESIOS assets over a month range, submitted with the
  UI's GraphQL mutation (``dagster-graphql``); the backfill daemon creates its runs.

``rain_minute_job`` pins the in-process executor, so the harness's code location is
``definitions.defs`` plus the same assets and checks on Dagster's multiprocess executor
(``rain_minute_multiprocess_job``: spawn, the default; ``rain_minute_forkserver_job``).

Every sensor and schedule that launches runs is stopped in the instance first (the minute
sensor would add current-minute writers, the bootstrap sensors Spark runs);
``run_failure_alert_sensor`` launches nothing and stays on.

Shared by tests/hardening/test_concurrency.py (reduced) and benchmarks/concurrency.py (full).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAIN_JOB = "rain_minute_job"
RAIN_MULTIPROCESS_JOB = "rain_minute_multiprocess_job"
RAIN_FORKSERVER_JOB = "rain_minute_forkserver_job"
ESIOS_ASSETS = ("esios_demand_forecast", "demand_forecast_esios", "esios_demand_forecast_csv")
DUCKDB_POOL = "duckdb"
MINUTE_FORMAT = "%Y-%m-%d-%H:%M"

# DuckDB's answer to a second writing process: 'IO Error: Could not set lock on file "...":
# Conflicting lock is held in ... (PID n)'.
DUCKDB_LOCK = re.compile(r"could not set lock|conflicting lock|lock is held", re.IGNORECASE)
# SQLite instance storage under load: reported apart, it is not a warehouse failure.
OTHER_LOCK = re.compile(r"database is locked", re.IGNORECASE)

# Platform settings that must not leak from the caller's shell into the temp platform.
PLATFORM_VARIABLES = (
    "SOURCE_MODE",
    "WAREHOUSE_PATH",
    "S3_BUCKET",
    "S3_BUCKET_NAME",
    "S3_ENDPOINT_URL",
    "S3_PREFIX",
    "LOCATIONS_FILE",
    "SQL_DATABASE_URL",
    "SIMULATOR_FAULT_RATE",
    "SIMULATOR_SEED",
    "RAIN_PARTITION_DAYS",
    "RAIN_RAW_RETENTION_HOURS",
    "OPENWEATHERMAP_BASE_URL",
    "OPENWEATHERMAP_API_KEY",
    "OPENWEATHERMAP_API_KEYS",
    "OPENWEATHERMAP_CALLS_PER_MINUTE",
    "ESIOS_BASE_URL",
    "ESIOS_API_TOKEN",
    "ALERT_WEBHOOK_URL",
)
TERMINAL_RUN = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}
_FORKSERVER = {"forkserver": {"preload_modules": ["definitions", "tests.hardening.queue_harness"]}}


def concurrency_definitions() -> dg.Definitions:
    """The platform's definitions plus the rain jobs on the multiprocess executor.

    The harness's workspace points here; the daemon, the CLIs and every run worker load it.
    """
    from definitions import defs
    from weather_assets.rain.assets import RAIN_ASSETS

    selection = dg.AssetSelection.assets(*RAIN_ASSETS)
    spawn = dg.define_asset_job(
        name=RAIN_MULTIPROCESS_JOB,
        selection=selection,
        description="rain_minute_job on Dagster's default executor: each step in a new process.",
    )
    forkserver = dg.define_asset_job(
        name=RAIN_FORKSERVER_JOB,
        selection=selection,
        config={"execution": {"config": {"multiprocess": {"start_method": _FORKSERVER}}}},
        description="The same, steps forked from a server that imported the code location.",
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[spawn, forkserver]))


# --- the platform: instance, environment, daemon ----------------------------------------------


@dataclass
class Platform:
    root: Path
    env: dict[str, str]
    workspace: Path
    logs: Path
    daemon: subprocess.Popen | None = None
    leftover_processes: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def data_dir(self) -> Path:
        return Path(self.env["DATA_DIR"])

    def instance(self) -> dg.DagsterInstance:
        from dagster._core.instance.ref import InstanceRef

        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    def start(self, args: Sequence[str], log_name: str) -> subprocess.Popen:
        """Start a command from the repository root, its output in logs/<log_name>.log.

        In a session of its own: whatever it spawns (code servers, run workers, step
        processes) stays in its process group, so one killpg reaches them all.
        """
        with (self.logs / f"{log_name}.log").open("w") as out:
            return subprocess.Popen(
                [str(a) for a in args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def finish(self, proc: subprocess.Popen, log_name: str, timeout: float = 300) -> str:
        """Wait for a command started by ``start``; its output, or an error quoting it."""
        try:
            code = proc.wait(timeout=timeout)
        finally:
            _signal_group(proc.pid, signal.SIGKILL)  # leftovers, or all of it on timeout
        text = (self.logs / f"{log_name}.log").read_text(errors="replace")
        if code:
            raise RuntimeError(f"{log_name} exited {code}:\n{text[-4000:]}")
        return text

    def start_daemon(self) -> None:
        self.daemon = self.start([BIN / "dagster-daemon", "run", "-w", self.workspace], "daemon")

    def stop_daemon(self, grace_s: float = 20) -> None:
        """SIGTERM the daemon's process group, then SIGKILL whatever is left of it."""
        if self.daemon is None:
            return
        group = self.daemon.pid
        _signal_group(group, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.daemon.wait(timeout=grace_s)
        _signal_group(group, signal.SIGKILL)  # run workers outlive a stopped daemon
        self.daemon.wait(timeout=10)
        deadline = time.time() + 10
        while (alive := processes_in_group(group)) and time.time() < deadline:
            time.sleep(0.2)
        self.leftover_processes = alive
        self.daemon = None


def _signal_group(group: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(group, sig)


def processes_in_group(group: int) -> list[str]:
    """Live (not zombie) processes of a process group, from /proc: 'pid command'."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        state, _ppid, pgrp = text[name_end + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(f"{stat.parent.name} {text[text.index('(') + 1 : name_end]}")
    return found


def _dagster_yaml() -> str:
    text = (REPO / "dagster.yaml.template").read_text()
    if os.environ.get("DAGSTER_PG_URL"):
        text += "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_PG_URL\n"
    return text


def _workspace_yaml() -> str:
    return (
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: tests.hardening.queue_harness\n"
        "      attribute: concurrency_definitions\n"
        f"      working_directory: {REPO}\n"
        "      location_name: weather_data_platform\n"
    )


@contextmanager
def platform(root: Path) -> Iterator[Platform]:
    """A fresh platform under ``root``, sensors and schedules off; the daemon stopped on exit.

    Instance storage is SQLite in DAGSTER_HOME, or PostgreSQL when DAGSTER_PG_URL is set (it
    must then name an empty database: the harness reads every run of the instance).
    """
    home, data, logs = root / "dagster_home", root / "data", root / "logs"
    for path in (home, data, logs):
        path.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(_dagster_yaml())
    workspace = root / "workspace.yaml"
    workspace.write_text(_workspace_yaml())
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_VARIABLES}
    env |= {"DAGSTER_HOME": str(home), "DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    plat = Platform(root=root, env=env, workspace=workspace, logs=logs)
    setup = plat.start([sys.executable, "-m", "esios_assets.sql_setup"], "sql_setup")
    plat.finish(setup, "sql_setup")
    stop = [sys.executable, "-m", "tests.hardening.queue_harness", "stop-instigators", workspace]
    plat.finish(plat.start(stop, "stop_instigators"), "stop_instigators")
    try:
        yield plat
    finally:
        plat.stop_daemon()


def stop_instigators(workspace: str) -> list[str]:
    """Stop, in $DAGSTER_HOME's instance, every sensor and schedule that launches runs.

    What ``dagster sensor stop`` and ``dagster schedule stop`` do, for all of them in one
    workspace load (nine CLI calls would load it nine times).
    """
    from dagster._core.definitions.sensor_definition import SensorType
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    stopped = []
    with (
        dg.DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[workspace])) as context,
    ):
        for location in context.create_request_context().code_locations:
            for repo in location.get_repositories().values():
                for sensor in repo.get_sensors():
                    if sensor.sensor_type != SensorType.RUN_STATUS:
                        origin = sensor.get_remote_origin_id()
                        instance.stop_sensor(origin, sensor.selector_id, sensor)
                        stopped.append(f"sensor {sensor.name}")
                for schedule in repo.get_schedules():
                    origin = schedule.get_remote_origin_id()
                    instance.stop_schedule(origin, schedule.selector_id, schedule)
                    stopped.append(f"schedule {schedule.name}")
    return stopped


# --- launching the two backfills ---------------------------------------------------------------


def rain_minutes(first: datetime, count: int) -> list[str]:
    return [(first + timedelta(minutes=i)).strftime(MINUTE_FORMAT) for i in range(count)]


def esios_months(first: date, count: int) -> list[str]:
    months, current = [], first
    for _ in range(count):
        months.append(current.isoformat())
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


def default_first_minute(now: datetime | None = None) -> datetime:
    """Yesterday 10:00 UTC: inside the partition window whatever RAIN_PARTITION_DAYS is."""
    day = (now or datetime.now(UTC)).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=UTC)


_BACKFILL_MUTATION = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""


@dataclass
class Launched:
    rain_backfill_id: str
    esios_backfill_id: str
    cli_seconds: float


def launch_backfills(plat: Platform, job: str, minutes: list[str], months: list[str]) -> Launched:
    """Both backfills at once: the rain CLI and the ESIOS GraphQL mutation side by side."""
    started = time.time()
    rain_args = [BIN / "dagster", "job", "backfill", "-w", plat.workspace, "-j", job]
    rain_args += ["--from", minutes[0], "--to", minutes[-1], "--noprompt"]
    rain = plat.start(rain_args, "rain_backfill")
    params = {
        "assetSelection": [{"path": [name]} for name in ESIOS_ASSETS],
        "partitionNames": months,
        "title": "ESIOS backfill (concurrency harness)",
    }
    esios_args = [BIN / "dagster-graphql", "-w", plat.workspace, "-t", _BACKFILL_MUTATION]
    esios_args += ["-v", json.dumps({"params": params})]
    esios = plat.start(esios_args, "esios_backfill")
    try:
        rain_out = plat.finish(rain, "rain_backfill")
    finally:
        esios_out = plat.finish(esios, "esios_backfill")
    cli_seconds = time.time() - started

    found = re.search(r"Launched backfill job `([^`]+)`", rain_out)
    if not found:
        raise RuntimeError(f"no backfill id in the rain CLI's output:\n{rain_out[-4000:]}")
    answer = next((line for line in esios_out.splitlines() if line.startswith('{"data"')), "")
    result = json.loads(answer or "{}").get("data", {}).get("launchPartitionBackfill", {})
    if result.get("__typename") != "LaunchBackfillSuccess":
        raise RuntimeError(f"the ESIOS backfill was not launched:\n{esios_out[-4000:]}")
    return Launched(found.group(1), result["backfillId"], cli_seconds)


def _backfill_status(instance: dg.DagsterInstance, backfill_id: str) -> str:
    backfill = instance.get_backfill(backfill_id)
    return backfill.status.value if backfill else "MISSING"


_BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def wait_for_runs(plat: Platform, launched: Launched, rain_runs: int, timeout_s: float) -> None:
    """Until the rain runs all exist, every run is terminal and the ESIOS backfill is done."""
    deadline = time.time() + timeout_s
    with plat.instance() as instance:
        while True:
            runs = instance.get_runs()
            rain = [r for r in runs if r.tags.get("dagster/backfill") == launched.rain_backfill_id]
            if (
                len(rain) >= rain_runs
                and all(r.status in TERMINAL_RUN for r in runs)
                and _backfill_status(instance, launched.esios_backfill_id) in _BACKFILL_DONE
            ):
                return
            if plat.daemon is not None and plat.daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({plat.daemon.returncode}); see daemon.log")
            if time.time() > deadline:
                counts: dict[str, int] = {}
                for r in runs:
                    counts[r.status.value] = counts.get(r.status.value, 0) + 1
                raise TimeoutError(f"runs not finished after {timeout_s:.0f} s: {counts}")
            time.sleep(2)


# --- what happened ------------------------------------------------------------------------------


@dataclass
class RunFacts:
    run_id: str
    job_name: str
    backfill: str
    status: str
    created: float
    start: float | None
    end: float | None
    enqueued: bool
    executor: str
    steps: int
    step_processes: int
    steps_in_orchestrator: int
    steps_outside_pool: int
    pool_intervals: list[tuple[float, float, str]]
    lock_lines: list[str]
    other_lock_lines: list[str]


_OPEN = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED}
_CLOSE = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
}


def _executor(message: str, run_config: dict) -> str | None:
    if message.startswith("Executing steps in process"):
        return "in_process"
    if message.startswith("Executing steps using multiprocess executor"):
        config = run_config.get("execution", {}).get("config", {}).get("multiprocess", {})
        return f"multiprocess/{next(iter(config.get('start_method', {})), 'spawn')}"
    return None


def run_facts(instance: dg.DagsterInstance, record) -> RunFacts:
    """Executor, step processes, duckdb-pool step intervals and lock messages of one run."""
    from dagster._serdes import serialize_value

    run = record.dagster_run
    pools: dict[str, str | None] = {}
    if run.execution_plan_snapshot_id:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        pools = {step.key: step.pool for step in plan.steps}
    executor, orchestrator_pid, enqueued = "unknown", None, False
    opened: dict[str, float] = {}
    step_pids: list[int | None] = []
    intervals, locks, other_locks = [], [], []
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        kind = event.event_type if event else None
        enqueued = enqueued or kind == dg.DagsterEventType.RUN_ENQUEUED
        if kind == dg.DagsterEventType.ENGINE_EVENT and (
            found := _executor(entry.message or "", run.run_config or {})
        ):
            executor, orchestrator_pid = found, event.pid
        if kind in _OPEN:
            opened[entry.step_key] = entry.timestamp
            step_pids.append(event.pid)
        elif kind in _CLOSE and entry.step_key in opened:
            start = opened.pop(entry.step_key)
            if pools.get(entry.step_key) == DUCKDB_POOL:
                intervals.append((start, entry.timestamp, f"{run.run_id[:8]}:{entry.step_key}"))
        text = serialize_value(entry)
        for pattern, found_lines in ((DUCKDB_LOCK, locks), (OTHER_LOCK, other_locks)):
            if pattern.search(text):
                found_lines.append(f"{run.run_id[:8]} {kind}: {(entry.message or text)[:300]}")
    return RunFacts(
        run_id=run.run_id,
        job_name=run.job_name,
        backfill=run.tags.get("dagster/backfill", ""),
        status=run.status.value,
        created=record.create_timestamp.timestamp(),
        start=record.start_time,
        end=record.end_time,
        enqueued=enqueued,
        executor=executor,
        steps=len(step_pids),
        step_processes=len(set(step_pids)),
        steps_in_orchestrator=sum(pid == orchestrator_pid for pid in step_pids),
        steps_outside_pool=sum(pool != DUCKDB_POOL for pool in pools.values()),
        pool_intervals=intervals,
        lock_lines=locks,
        other_lock_lines=other_locks,
    )


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t comes before a start at t)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = current = 0
    for _, delta in points:
        current += delta
        most = max(most, current)
    return most


def overlapping_steps(intervals: Sequence[tuple[float, float, str]]) -> list[str]:
    """Each pool step that started before an earlier-started one had finished."""
    found, latest = [], None
    for start, end, name in sorted(intervals):
        if latest is not None and start < latest[1]:
            found.append(f"{name} started {latest[1] - start:.3f} s before {latest[2]} ended")
        if latest is None or end > latest[1]:
            latest = (start, end, name)
    return found


def log_lock_lines(plat: Platform) -> tuple[list[str], list[str]]:
    """Lock messages in the compute logs and in the daemon's and CLIs' own output."""
    files = [p for p in plat.home.rglob("*") if p.is_file() and p.suffix in {".out", ".err"}]
    files += sorted(plat.logs.glob("*.log"))
    duck, other = [], []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            if DUCKDB_LOCK.search(line):
                duck.append(f"{path.name}: {line.strip()[:300]}")
            elif OTHER_LOCK.search(line):
                other.append(f"{path.name}: {line.strip()[:300]}")
    return duck, other


@dataclass
class WarehouseFacts:
    coordinates: int
    rain_minutes: int
    rain_rows: int
    rain_duplicate_keys: int
    rain_minutes_with_wrong_coordinates: int
    totals_rows: int
    totals_distinct: int
    totals_minutes_with_wrong_count: int
    esios_rows: int
    esios_duplicate_hours: int
    esios_months_wrong: list[str]
    sql_rows: int
    csv_rows: int


def warehouse_facts(data_dir: Path, minutes: list[str], months: list[str]) -> WarehouseFacts:
    """What the runs left in DuckDB, the SQL table and the CSV (read with no run alive)."""
    import duckdb
    import polars as pl
    import sqlalchemy as sa

    from esios_assets.transform import expected_hours, month_bounds_utc
    from resources.sql import default_sqlite_url
    from weather_assets.locations import load_locations

    n = len(load_locations(REPO / "weather_assets" / "locations.csv"))
    first = datetime.strptime(minutes[0], MINUTE_FORMAT)
    window = [first, first + timedelta(minutes=len(minutes))]
    rain = "from weather.rain_forecasts where fetched_minute >= ? and fetched_minute < ?"
    totals = "from weather.rolling_precipitation_sum where window_start >= ? and window_start < ?"
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:

        def one(sql: str, params: Sequence = window) -> tuple:
            return conn.execute(sql, list(params)).fetchone()

        rain_minutes, rain_rows = one(f"select count(distinct fetched_minute), count(*) {rain}")
        (rain_dupes,) = one(
            f"select count(*) from (select 1 {rain}"
            " group by location_id, fetched_minute, forecast_at having count(*) > 1)"
        )
        (rain_wrong,) = one(
            f"select count(*) from (select 1 {rain} group by fetched_minute"
            f" having count(distinct location_id) <> {n})"
        )
        totals_rows, totals_distinct = one(
            f"select count(*), count(distinct (location_id, window_start)) {totals}"
        )
        (totals_wrong,) = one(
            f"select count(*) from (select 1 {totals} group by window_start"
            f" having count(*) <> {n} or count(distinct location_id) <> {n})"
        )
        esios_rows, esios_distinct = one(
            "select count(*), count(distinct datetime_utc) from esios.esios_demand_forecast", []
        )
        months_wrong = []
        for month in map(date.fromisoformat, months):
            (hours,) = one(
                "select count(*) from esios.esios_demand_forecast"
                " where datetime_utc >= ? and datetime_utc < ?",
                month_bounds_utc(month),
            )
            if hours != expected_hours(month):
                months_wrong.append(f"{month:%Y-%m}: {hours}/{expected_hours(month)}")
    engine = sa.create_engine(default_sqlite_url(data_dir))
    with engine.connect() as sql:
        sql_rows = sql.execute(sa.text("select count(*) from demand_forecast_esios")).scalar_one()
    engine.dispose()
    csv = data_dir / "esios" / "demand_forecast_esios.csv"
    return WarehouseFacts(
        coordinates=n,
        rain_minutes=rain_minutes,
        rain_rows=rain_rows,
        rain_duplicate_keys=rain_dupes,
        rain_minutes_with_wrong_coordinates=rain_wrong,
        totals_rows=totals_rows,
        totals_distinct=totals_distinct,
        totals_minutes_with_wrong_count=totals_wrong,
        esios_rows=esios_rows,
        esios_duplicate_hours=esios_rows - esios_distinct,
        esios_months_wrong=months_wrong,
        sql_rows=sql_rows,
        csv_rows=pl.read_csv(csv, infer_schema=False).height if csv.exists() else 0,
    )


@dataclass
class Outcome:
    """Everything the test asserts and the benchmark prints."""

    job: str
    minutes: list[str]
    months: list[str]
    launched: Launched
    esios_backfill_status: str
    runs: list[RunFacts]
    other_runs: list[str]
    log_lock_lines: list[str]
    log_other_lock_lines: list[str]
    leftover_processes: list[str]
    warehouse: WarehouseFacts
    load_average: tuple[float, float]
    daemon_started_at: float

    @property
    def rain_runs(self) -> list[RunFacts]:
        return [r for r in self.runs if r.backfill == self.launched.rain_backfill_id]

    @property
    def esios_runs(self) -> list[RunFacts]:
        return [r for r in self.runs if r.backfill == self.launched.esios_backfill_id]

    @property
    def pool_intervals(self) -> list[tuple[float, float, str]]:
        return [i for r in self.runs for i in r.pool_intervals]

    @property
    def lock_failures(self) -> list[str]:
        return [line for r in self.runs for line in r.lock_lines] + self.log_lock_lines

    @property
    def max_concurrent_runs(self) -> int:
        return max_overlap([(r.start, r.end) for r in self.runs if r.start and r.end])

    @property
    def esios_queue_wait(self) -> tuple[float, float]:
        """Seconds from daemon start until the first ESIOS run was queued, and until it started."""
        first = min(self.esios_runs, key=lambda r: r.created)
        t0 = self.daemon_started_at
        return first.created - t0, (first.start or first.created) - t0

    @property
    def backfills_overlapped(self) -> bool:
        """Whether some ESIOS run was executing while some rain run was."""
        return any(
            e.start < r.end and r.start < e.end
            for e in self.esios_runs
            for r in self.rain_runs
            if e.start and e.end and r.start and r.end
        )

    @property
    def wall_seconds(self) -> float:
        last_end = max((r.end for r in self.runs if r.end), default=self.daemon_started_at)
        return last_end - self.daemon_started_at

    def seconds_with_runs_alive(self) -> dict[int, float]:
        """How long 0, 1, 2... runs were executing at once, from daemon start to the last end."""
        points = [(self.daemon_started_at, 0)]
        points += [
            (t, d) for r in self.runs if r.start and r.end for t, d in ((r.start, 1), (r.end, -1))
        ]
        seconds: dict[int, float] = {}
        alive, last = 0, self.daemon_started_at
        for t, delta in sorted(points):
            seconds[alive] = seconds.get(alive, 0.0) + t - last
            alive, last = alive + delta, t
        return dict(sorted(seconds.items()))

    def figures(self) -> dict[str, object]:
        w = self.warehouse
        pool = [(s, e) for s, e, _ in self.pool_intervals]
        return {
            "rain job": self.job,
            "executors": ", ".join(sorted({f"{r.job_name}: {r.executor}" for r in self.runs})),
            "rain minutes / ESIOS months": f"{len(self.minutes)} / {len(self.months)}",
            "runs (rain + ESIOS)": f"{len(self.runs)} ({len(self.rain_runs)} + "
            f"{len(self.esios_runs)})",
            "runs not SUCCESS": sum(r.status != "SUCCESS" for r in self.runs),
            "ESIOS backfill": self.esios_backfill_status,
            "steps (of which in the duckdb pool)": f"{sum(r.steps for r in self.runs)} "
            f"({len(self.pool_intervals)})",
            "wall time, daemon start to last run end": f"{self.wall_seconds:.0f} s",
            "runs/min": round(len(self.runs) / (self.wall_seconds / 60), 2),
            "backfill CLIs (side by side, before the daemon)": f"{self.launched.cli_seconds:.0f} s",
            "max concurrent runs": self.max_concurrent_runs,
            "seconds with 0/1/2.. runs executing": " / ".join(
                f"{s:.0f}" for s in self.seconds_with_runs_alive().values()
            ),
            "first ESIOS run queued / started (s after daemon)": "{:.0f} / {:.0f}".format(
                *self.esios_queue_wait
            ),
            "ESIOS runs overlapped rain runs": "yes" if self.backfills_overlapped else "no",
            "max concurrent duckdb pool steps": max_overlap(pool),
            "duckdb lock failures": len(self.lock_failures),
            "sqlite 'database is locked' lines": sum(len(r.other_lock_lines) for r in self.runs)
            + len(self.log_other_lock_lines),
            "rain rows / duplicate keys": f"{w.rain_rows} / {w.rain_duplicate_keys}",
            "next-hour totals rows / duplicates": f"{w.totals_rows} / "
            f"{w.totals_rows - w.totals_distinct}",
            "ESIOS hours / duplicates / SQL rows / CSV rows": f"{w.esios_rows} / "
            f"{w.esios_duplicate_hours} / {w.sql_rows} / {w.csv_rows}",
            "load average (1 min) at start / end": "{:.1f} / {:.1f}".format(*self.load_average),
        }


def run_concurrent_backfills(
    root: Path,
    *,
    job: str = RAIN_MULTIPROCESS_JOB,
    minutes: list[str],
    months: list[str],
    timeout_s: float,
) -> Outcome:
    """Set up the platform, queue both backfills, start the daemon, wait, stop it, read it all.

    The backfills are queued before the daemon starts, so its first dequeue pass sees every
    rain run: on a fresh instance that pass admits up to max_concurrent_runs of them at once
    (the duckdb pool has no slots yet when the queue checks it), which leaves their steps to
    the pool alone. Later passes hold a writer run back while any step holds or awaits the pool.
    """
    load_start = os.getloadavg()[0]
    with platform(root) as plat:
        launched = launch_backfills(plat, job, minutes, months)
        daemon_started_at = time.time()
        plat.start_daemon()
        wait_for_runs(plat, launched, len(minutes), timeout_s)
        load_end = os.getloadavg()[0]
        plat.stop_daemon()
        with plat.instance() as instance:
            runs = [run_facts(instance, record) for record in instance.get_run_records()]
            status = _backfill_status(instance, launched.esios_backfill_id)
    ours = {launched.rain_backfill_id, launched.esios_backfill_id}
    duck, other = log_lock_lines(plat)
    return Outcome(
        job=job,
        minutes=minutes,
        months=months,
        launched=launched,
        esios_backfill_status=status,
        runs=[r for r in runs if r.backfill in ours],
        other_runs=[
            f"{r.job_name} {r.run_id[:8]} {r.status}" for r in runs if r.backfill not in ours
        ],
        log_lock_lines=duck,
        log_other_lock_lines=other,
        leftover_processes=plat.leftover_processes,
        warehouse=warehouse_facts(plat.data_dir, minutes, months),
        load_average=(load_start, load_end),
        daemon_started_at=daemon_started_at,
    )


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "stop-instigators":
        for line in stop_instigators(argv[1]):
            print(f"stopped {line}")
        return 0
    print("usage: python -m tests.hardening.queue_harness stop-instigators WORKSPACE")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
