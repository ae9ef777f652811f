"""End-to-end latency of the rain stream in a running `make run`, and its cost at rest.

    make run &                     # or DATA_DIR=/tmp/x DAGSTER_HOME=/tmp/x/home make run
    .venv/bin/python benchmarks/rain_stream_latency.py --minutes 30 [--url http://127.0.0.1:8000]

For --minutes it polls ``/rain`` every 0.25 s and the warehouse (read-only) every 2 s, and for
every (coordinate, minute) records when it first appeared:
  API answer -> /rain        first seen in /rain  - answered_at (the producer's answer time)
  API answer -> DuckDB row   first seen in weather.rolling_precipitation_sum - answered_at
It prints p50 / p95 / max of both (target: /rain p95 <= 10 s), and the CPU share and resident
memory of the NATS server, the producers and the streaming query while idle between minutes
(seconds 25-55 of each minute), read from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from resources.settings import load_settings
from resources.warehouse import read_only_connection

PROCESSES = {
    "nats-server": lambda cmd: "nats-server" in cmd[0] if cmd else False,
    "producer": lambda cmd: "weather_assets.rain.stream.producer" in cmd,
    "processor (Spark driver + JVM)": lambda cmd: "weather_assets.rain.stream.processor" in cmd,
}
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _tree(root: int) -> set[int]:
    """``root`` and its descendants (the processor's JVM and Python workers count as its own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _usage(pids: set[int]) -> tuple[float, float]:
    """(cpu seconds, resident MB) summed over ``pids``."""
    cpu = rss = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        cpu += (int(stat[11]) + int(stat[12])) / TICKS
        rss += int(statm[1]) * PAGE / 1e6
    return cpu, rss


def _groups() -> dict[str, set[int]]:
    groups: dict[str, set[int]] = {name: set() for name in PROCESSES}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(entry.name)
            for name, match in PROCESSES.items():
                if cmd and match(cmd):
                    groups[name] |= _tree(int(entry.name))
    return groups


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s "
        f"({len(ordered)} coordinate-minutes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    warehouse = load_settings().warehouse_path
    answered: dict[tuple[str, str], float] = {}
    to_rain: dict[tuple[str, str], float] = {}
    to_duckdb: dict[tuple[str, str], float] = {}
    idle: dict[str, list[tuple[float, float]]] = {name: [] for name in PROCESSES}
    idle_start: tuple[float, dict[str, tuple[float, float]]] | None = None
    end = time.monotonic() + args.minutes * 60
    next_db = 0.0
    while time.monotonic() < end:
        now = time.time()
        try:
            with urllib.request.urlopen(f"{args.url}/rain", timeout=5) as response:
                rows = json.load(response)
        except OSError:
            rows = []
        for row in rows:
            if row.get("answered_at") is None:
                continue
            key = (row["location_id"], row["window_start"][:16])
            if key not in to_rain:
                at = datetime.fromisoformat(row["answered_at"]).timestamp()
                answered[key] = at
                to_rain[key] = now - at
        if time.monotonic() >= next_db:
            next_db = time.monotonic() + 2
            try:
                with read_only_connection(warehouse, attempts=2, delay_s=0.1) as conn:
                    db_rows = conn.execute(
                        "select location_id, strftime(window_start, '%Y-%m-%dT%H:%M') "
                        "from weather.rolling_precipitation_sum "
                        "where window_start >= now()::timestamp - interval 10 minute"
                    ).fetchall()
            except Exception:  # locked or not created yet: next poll
                db_rows = []
            seen = time.time()
            for location_id, minute in db_rows:
                key = (location_id, minute)
                if key in answered and key not in to_duckdb:
                    to_duckdb[key] = seen - answered[key]
        second = datetime.now(UTC).second
        if 25 <= second < 55 and idle_start is None:
            groups = _groups()
            idle_start = (time.monotonic(), {n: _usage(p) for n, p in groups.items()})
        elif second >= 55 and idle_start is not None:
            started, before = idle_start
            elapsed = time.monotonic() - started
            for name, pids in _groups().items():
                cpu, rss = _usage(pids)
                if pids and elapsed > 5:
                    idle[name].append(((cpu - before[name][0]) / elapsed * 100, rss))
            idle_start = None
        time.sleep(0.25)

    print(f"API answer -> /rain:       {percentiles(list(to_rain.values()))}")
    print(f"API answer -> DuckDB row:  {percentiles(list(to_duckdb.values()))}")
    for name, samples in idle.items():
        if samples:
            cpu = statistics.mean(s[0] for s in samples)
            rss = statistics.mean(s[1] for s in samples)
            print(f"idle {name}: {cpu:.1f}% of one core, {rss:,.0f} MB resident")
        else:
            print(f"idle {name}: not running")


if __name__ == "__main__":
    main()
