"""Soak (CI form): 30 consecutive minute runs of the rain stream with 20% of requests failing.

The full form (every coordinate in the registry, real waits) is ``benchmarks/fault_soak.py``.
Here the clients' retry waits are recorded instead of slept: the soak is about what the runs
do under faults, and that a client waits exactly ``Retry-After`` is pinned by
tests/resources/test_http.py and test_simulator_faults.py.
"""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from definitions import build_resources
from resources.http import HttpClient
from resources.settings import load_settings
from tests.hardening.soak_driver import (
    consecutive_minutes,
    duplicate_forecast_rows,
    fault_free_totals,
    run_minutes,
    stored_totals,
    write_locations,
)
from weather_assets.locations import load_locations

MINUTES = 30
COORDINATES = 20
FAULT_RATE = "0.2"


@pytest.fixture
def retry_waits(monkeypatch) -> list[float]:
    """Every wait an HTTP client would sleep before a retry, in order, none of them slept."""
    waits: list[float] = []
    monkeypatch.setitem(HttpClient.__init__.__kwdefaults__, "sleep", waits.append)
    return waits


def test_thirty_minutes_at_twenty_percent_faults(platform_env, monkeypatch, instance, retry_waits):
    default_registry = load_settings().locations_file
    locations_file = write_locations(platform_env / "locations.csv", default_registry, COORDINATES)
    monkeypatch.setenv("LOCATIONS_FILE", str(locations_file))
    monkeypatch.setenv("SIMULATOR_FAULT_RATE", FAULT_RATE)
    settings = load_settings()
    resources = build_resources(settings)
    keys = consecutive_minutes(MINUTES, minutes_ago=MINUTES + 10)

    outcomes = run_minutes(keys, resources, instance)

    # Every partition materializes (its checks included).
    assert [o.key for o in outcomes if not o.success] == []
    # The faults happened and were retried: in the metadata and, line by line, in the run logs.
    reasons = Counter()
    for outcome in outcomes:
        reasons.update(outcome.retries_by_reason)
        assert len(outcome.retry_log_lines) == outcome.http_retries, outcome.key
    total_retries = sum(o.http_retries for o in outcomes)
    calls = MINUTES * COORDINATES
    assert 0.1 * calls < total_retries < 0.4 * calls
    assert {"HTTP 429", "timeout", "malformed body"} <= set(reasons)
    assert any(r in reasons for r in ("HTTP 500", "HTTP 502", "HTTP 503"))
    retry_after_lines = [
        line for o in outcomes for line in o.retry_log_lines if "(Retry-After: 1)" in line
    ]
    assert retry_after_lines
    # One wait per retry; a 429's is exactly its Retry-After (backoff waits are jittered below
    # their ceiling).
    assert len(retry_waits) == total_retries
    assert retry_waits.count(1.0) >= len(retry_after_lines)

    # Every coordinate exactly once per partition, no duplicate forecast rows.
    stored = stored_totals(settings.warehouse_path, keys)
    assert stored.height == MINUTES * COORDINATES
    per_minute = stored.group_by("window_start").agg(pl.col("location_id").n_unique().alias("n"))
    assert per_minute["n"].to_list() == [COORDINATES] * MINUTES
    assert duplicate_forecast_rows(settings.warehouse_path) == 0

    # And the numbers are the ones a fault-free fetch gives (a coordinate that failed all its
    # retries would be null: allowed by the run's 5% rule, counted here).
    reference = fault_free_totals(keys, load_locations(locations_file), resources["openweathermap"])
    failed = sum(o.failed_coordinates for o in outcomes)
    got = stored.sort("window_start", "location_id")
    want = reference.sort("window_start", "location_id")
    fetched = got["minutes_covered"] == want["minutes_covered"]
    assert (~fetched).sum() <= failed
    assert_frame_equal(got.filter(fetched), want.filter(fetched), check_dtypes=False)
