"""The dashboard's snapshot: read once, published whole, kept when a read fails."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from resources.settings import load_settings
from serving import warehouse_snapshot
from serving.warehouse_snapshot import (
    DEFAULT_REFRESH_SECONDS,
    Snapshot,
    SnapshotHolder,
    read_snapshot,
)
from tests.serving.dashboard_data import temperature_frames, write_temperature_tables


def test_a_missing_warehouse_is_an_empty_snapshot_and_a_reported_error(platform_env):
    holder = SnapshotHolder(load_settings().warehouse_path)
    assert holder.refresh() is False
    assert holder.current == Snapshot()
    status = holder.status()
    assert "does not exist yet" in status["last_error"]
    assert str(holder.warehouse_path) not in status["last_error"]  # public: no file paths
    assert status["rain_stale"] is True and status["warehouse_read_at"] is None


def test_tables_not_created_yet_read_as_no_rows(platform_env):
    path = load_settings().warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(path)).close()
    snapshot = read_snapshot(path, {})
    assert snapshot.rain == snapshot.temperature == snapshot.accuracy == []
    assert snapshot.read_at is not None and snapshot.model_version is None


def test_temperature_rows_are_utc_with_the_open_forecast_last(platform_env):
    write_temperature_tables()
    frames = temperature_frames()
    snapshot = read_snapshot(load_settings().warehouse_path, {})
    hours = [p["hour"] for p in snapshot.temperature]
    assert len(hours) == frames["temperature_actuals"].height + 1
    assert all(h.tzinfo is not None and h.utcoffset() == timedelta(0) for h in hours)
    assert hours == sorted(hours)
    assert snapshot.temperature[-1]["actual_c"] is None  # the next hour: predicted only
    assert snapshot.temperature[-1]["predicted_c"] == 9.25
    assert snapshot.model_version == "2026-11-21"
    assert len(snapshot.accuracy) == frames["temperature_accuracy"].height


def test_a_failed_refresh_keeps_the_previous_snapshot(platform_env, monkeypatch):
    write_temperature_tables()
    holder = SnapshotHolder(load_settings().warehouse_path)
    assert holder.refresh()
    good = holder.current

    def locked(*args, **kwargs):
        raise duckdb.IOException("Could not set lock on file: Conflicting lock is held")

    monkeypatch.setattr("serving.warehouse_snapshot.read_snapshot", locked)
    assert holder.refresh() is False
    assert holder.current is good
    assert "busy" in holder.status()["last_error"]
    monkeypatch.undo()
    assert holder.refresh() and holder.status()["last_error"] is None


def test_rain_staleness_follows_the_window_start():
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    fresh = Snapshot(rain=[{"window_start": now - timedelta(minutes=2)}])
    old = Snapshot(rain=[{"window_start": now - timedelta(minutes=4)}])
    assert not fresh.rain_stale(now) and fresh.rain_age_seconds(now) == 120
    assert old.rain_stale(now)
    assert Snapshot().rain_stale(now) and Snapshot().rain_age_seconds(now) is None


def test_refresh_seconds_setting(monkeypatch):
    monkeypatch.delenv("DASHBOARD_REFRESH_SECONDS", raising=False)
    assert load_settings().dashboard_refresh_seconds == DEFAULT_REFRESH_SECONDS
    monkeypatch.setenv("DASHBOARD_REFRESH_SECONDS", "2.5")
    assert load_settings().dashboard_refresh_seconds == 2.5
    for bad in ("0", "soon"):
        monkeypatch.setenv("DASHBOARD_REFRESH_SECONDS", bad)
        with pytest.raises(ValueError, match="DASHBOARD_REFRESH_SECONDS"):
            load_settings()


LOCK_MESSAGE = (
    'IO Error: Could not set lock on file "/srv/secret-volume/warehouse.duckdb": Conflicting '
    "lock is held in /opt/venv/bin/python3.11 (PID 4242) by user dagster"
)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (duckdb.IOException(LOCK_MESSAGE), "busy"),
        (PermissionError(13, "Permission denied", "/srv/secret-volume/warehouse.duckdb"), "log"),
        (RuntimeError("s3://secret-bucket/dagster/x failed"), "log"),
    ],
)
def test_a_failed_read_shows_a_generic_error_and_logs_the_details(
    platform_env, monkeypatch, caplog, error, shown
):
    """The status reaches public pages: no file paths, PIDs or bucket names; the log has them."""

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(warehouse_snapshot, "read_snapshot", failing)
    holder = SnapshotHolder(load_settings().warehouse_path)
    with caplog.at_level(logging.WARNING, logger="serving.dashboard"):
        assert holder.refresh() is False
    public = holder.status()["last_error"]
    assert shown in public
    for secret in ("/srv/secret-volume", "4242", "secret-bucket", "python3.11"):
        assert secret not in public
    assert str(error) in caplog.text


class _NotAnExit(BaseException):
    """A BaseException that is not SystemExit/KeyboardInterrupt (e.g. a library's own)."""


def test_the_refresher_thread_survives_any_exception(platform_env, monkeypatch):
    write_temperature_tables()
    real = warehouse_snapshot.read_snapshot
    failures = [
        RuntimeError("boom"),
        KeyError("rain"),
        pl.exceptions.ComputeError("polars"),
        duckdb.InternalException("duckdb"),
        _NotAnExit("odd"),
    ]
    done = threading.Event()

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop(0)
        done.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(warehouse_snapshot, "read_snapshot", flaky)
    holder = SnapshotHolder(load_settings().warehouse_path, refresh_seconds=0.02)
    holder.start()
    try:
        assert done.wait(10), f"the refresher stopped; failures left: {failures}"
        assert holder._thread.is_alive()
        deadline = datetime.now() + timedelta(seconds=5)
        while holder.refreshes == 0 and datetime.now() < deadline:
            threading.Event().wait(0.02)
        assert holder.refreshes >= 1 and holder.status()["last_error"] is None
    finally:
        holder.stop()
