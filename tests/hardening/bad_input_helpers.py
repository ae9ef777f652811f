"""What the bad-input tests compare: error chains, files on disk, warehouse rows, stand-in APIs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
from werkzeug import Request, Response

from esios_assets.simulator import indicator_460_payload

MADRID = ZoneInfo("Europe/Madrid")


def failure_text(result: dg.ExecuteInProcessResult, node: str) -> str:
    """The step failure of ``node`` as the UI shows it: the error, then each cause."""
    error = result.failure_data_for_node(node).error
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def step_failures(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure of a run (checks included), error and causes, as one string."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(f"{event.step_key}: {error.message}")
                error = error.cause
    return "\n".join(texts)


def run_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every event of a run, with its message and metadata, as one string to search."""
    return "\n".join(str(event) for event in instance.all_logs(run_id))


def files(root: Path, exclude: Iterable[str] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (empty if it does not exist)."""
    skip = set(exclude)
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name not in skip
    }


def rows(database: str, sql: str) -> list[tuple]:
    """Rows of a read-only query against the DuckDB warehouse."""
    with duckdb.connect(database, read_only=True) as conn:
        return conn.execute(sql).fetchall()


def onecall_json(request: Request) -> Response:
    """A well-formed One Call 3.0 answer with a light rain nowcast, from the next full minute
    as the real API answers."""
    first = int(datetime.now(UTC).timestamp()) // 60 * 60 + 60
    body = {
        "lat": float(request.args["lat"]),
        "lon": float(request.args["lon"]),
        "timezone": "Etc/GMT",
        "timezone_offset": 0,
        "minutely": [{"dt": first + 60 * i, "precipitation": 0.6} for i in range(61)],
    }
    return Response(json.dumps(body), content_type="application/json")


MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><title>Maintenance</title></head>"
    "<body><h1>We'll be back soon</h1></body></html>"
)


def html_page(request: Request) -> Response:
    """What a captive portal or a maintenance proxy answers: HTTP 200, text/html."""
    return Response(MAINTENANCE_PAGE, status=200, content_type="text/html; charset=utf-8")


def esios_handler(missing_utc: Callable[[], set[str]]) -> Callable[[Request], Response]:
    """ESIOS indicator 460 for the requested local range, minus the hours ``missing_utc()``
    names (``YYYY-MM-DDTHH:MM:SSZ``), read at each request so a test can open a gap."""

    def handle(request: Request) -> Response:
        start, end = (
            datetime.fromisoformat(request.args[name]).replace(tzinfo=MADRID)
            for name in ("start_date", "end_date")
        )
        payload = indicator_460_payload(start, end)
        gone = missing_utc()
        values = payload["indicator"]["values"]
        payload["indicator"]["values"] = [v for v in values if v["datetime_utc"] not in gone]
        return Response(json.dumps(payload), content_type="application/json")

    return handle
