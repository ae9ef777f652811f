"""The hand-over between the two steps of ``rain_forecasts``: the un-pooled step that gathers a
run's minutes (processor files, log, on-demand fetch: all network I/O) stages them here, and the
pooled writer reads them back and writes DuckDB, so the single ``duckdb`` pool slot is never
held while the API or the log is slow.

Staged in the object store (not DATA_DIR), so the two steps may run on different machines:
``staging/rain_forecasts/<first minute's day>/<root run id>/<first minute HH-MM>.parquet`` plus
``.json`` (the materialization metadata and the run's window). Keyed by the root run id, so a
re-execution from failure finds what its parent staged, and two runs of one minute never read
each other's. Deleted after a successful write (the writer's success hook, which Dagster runs
after the pool slot is freed); leftovers of failed runs go with the raw retention, by day
folder. No Dagster here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from botocore.exceptions import ClientError

from resources.object_store import ObjectStore

STAGING_PREFIX = "staging/rain_forecasts"
MINUTE_LABEL = "%Y-%m-%d-%H:%M"


class StagedMinutesMissing(RuntimeError):
    """The writer found nothing staged for its run and window."""


@dataclass(frozen=True)
class StagedMinutes:
    forecasts: pl.DataFrame
    metadata: dict[str, Any]
    """JSON values of the materialization metadata; keys in ``markdown`` hold Markdown text."""
    markdown: list[str]


def _base(store: ObjectStore, run_id: str, start: datetime) -> str:
    return store.key(STAGING_PREFIX, f"{start:%Y-%m-%d}", run_id, f"{start:%H-%M}")


def _window_text(start: datetime, end: datetime) -> str:
    return f"{start:{MINUTE_LABEL}}...{end:{MINUTE_LABEL}}"


def stage(
    store: ObjectStore,
    run_id: str,
    window: tuple[datetime, datetime],
    forecasts: pl.DataFrame,
    metadata: dict[str, Any],
    markdown: tuple[str, ...] = (),
) -> str:
    """Stage a run's forecasts and metadata; returns the parquet's URI."""
    start, end = window
    base = _base(store, run_id, start)
    uri = store.put_parquet(f"{base}.parquet", forecasts)
    envelope = {
        "window": _window_text(start, end),
        "metadata": metadata,
        "markdown": list(markdown),
    }
    store.put_bytes(f"{base}.json", json.dumps(envelope).encode(), content_type="application/json")
    return uri


def read_staged(
    store: ObjectStore, run_id: str, window: tuple[datetime, datetime]
) -> StagedMinutes:
    """What ``stage`` put for this run and window; a clear error when it is not there."""
    start, end = window
    base = _base(store, run_id, start)
    try:
        envelope = json.loads(store.get_bytes(f"{base}.json"))
        forecasts = store.get_parquet(f"{base}.parquet")
    except FileNotFoundError as exc:
        raise StagedMinutesMissing(_missing_text(store, base, start, end)) from exc
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        raise StagedMinutesMissing(_missing_text(store, base, start, end)) from exc
    if envelope["window"] != _window_text(start, end):
        raise StagedMinutesMissing(
            f"the minutes staged at {store.uri(base)}.* are {envelope['window']}, not this run's "
            f"{_window_text(start, end)}: re-run the whole minute (both steps of rain_forecasts)"
        )
    return StagedMinutes(forecasts, envelope["metadata"], envelope["markdown"])


def _missing_text(store: ObjectStore, base: str, start: datetime, end: datetime) -> str:
    return (
        f"nothing staged for minutes {_window_text(start, end)} at {store.uri(base)}.*: the "
        "loading step of this run did not stage them, or they were already written and "
        "deleted, or the raw retention removed them. Re-run the whole minute (both steps of "
        "rain_forecasts): loading it again is safe, the write replaces the minute."
    )


def staged_keys_of_run(store: ObjectStore, run_id: str) -> list[str]:
    """Every object staged by (the root of) ``run_id``."""
    prefix = store.key(STAGING_PREFIX) + "/"
    return [k for k in store.list_keys(prefix) if k[len(prefix) :].split("/")[1:2] == [run_id]]


def expired_staging_keys(store: ObjectStore, cutoff: datetime) -> list[str]:
    """Staged objects whose day folder is wholly before ``cutoff`` (failed runs' leftovers)."""
    prefix = store.key(STAGING_PREFIX) + "/"
    return [
        k
        for k in store.list_keys(prefix)
        if k[len(prefix) : len(prefix) + 10] < f"{cutoff:%Y-%m-%d}"
    ]
