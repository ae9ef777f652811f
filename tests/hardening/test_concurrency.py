"""Issue #8.2, reduced for CI: a minute backfill and the ESIOS backfill at once, through the run
queue, on the multiprocess executor: every run succeeds, no DuckDB lock conflict, every row once.

The daemon, the CLIs and every run are real processes (see tests/hardening/queue_harness.py);
the full size (60 minutes, 24 months) is benchmarks/concurrency.py.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import pytest

from esios_assets.transform import expected_hours
from tests.hardening import queue_harness as harness

# Each minute is a run of six steps, each a new process that holds the duckdb pool slot while
# it starts (~3 s on two idle cores): two minutes and one month (9 steps) keep the test near
# two and a half minutes. Both rain runs start together (see run_concurrent_backfills).
MINUTES = 2
MONTHS = 1
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def outcome() -> harness.Outcome:
    with tempfile.TemporaryDirectory(prefix="concurrency-") as root:
        try:
            return harness.run_concurrent_backfills(
                Path(root),
                job=harness.RAIN_MULTIPROCESS_JOB,
                minutes=harness.rain_minutes(harness.default_first_minute(), MINUTES),
                months=harness.esios_months(date(2017, 1, 1), MONTHS),
                timeout_s=TIMEOUT_S,
            )
        except Exception as exc:  # the temp dir goes: keep the daemon's last words
            log = Path(root) / "logs" / "daemon.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            pytest.fail(f"{type(exc).__name__}: {exc}\n--- daemon.log (tail) ---\n{tail}")


def test_both_backfills_went_through_the_run_queue(outcome):
    assert len(outcome.rain_runs) == MINUTES  # one run per minute partition
    assert outcome.esios_runs, "the backfill daemon created no ESIOS run"
    assert all(r.enqueued for r in outcome.runs), "a run bypassed the run queue"
    # Several runs were alive at once (else nothing could collide), never more than the
    # queue's max_concurrent_runs (dagster.yaml.template: 4).
    assert 2 <= outcome.max_concurrent_runs <= 4, "the runs never overlapped: nothing was tested"
    assert outcome.other_runs == [], "a sensor or schedule launched runs of its own"


def test_every_run_succeeds(outcome):
    assert [(r.job_name, r.status) for r in outcome.runs if r.status != "SUCCESS"] == []
    assert outcome.esios_backfill_status == "COMPLETED_SUCCESS"


def test_steps_ran_on_the_multiprocess_executor_each_in_its_own_process(outcome):
    for run in outcome.runs:
        assert run.executor == "multiprocess/spawn", (run.job_name, run.executor)
        assert run.steps > 0
        assert run.steps_in_orchestrator == 0
        assert run.step_processes == run.steps


def test_the_duckdb_pool_serialized_every_step(outcome):
    assert all(r.steps_outside_pool == 0 for r in outcome.runs)
    assert len(outcome.pool_intervals) == sum(r.steps for r in outcome.runs)
    assert harness.overlapping_steps(outcome.pool_intervals) == []


def test_no_duckdb_lock_failure_anywhere(outcome):
    assert outcome.lock_failures == []


def test_rain_minutes_are_all_there_once(outcome):
    w = outcome.warehouse
    assert w.coordinates == 60
    assert w.rain_minutes == MINUTES
    assert w.rain_duplicate_keys == 0
    assert w.rain_minutes_with_wrong_coordinates == 0
    assert w.totals_rows == w.totals_distinct == MINUTES * w.coordinates
    assert w.totals_minutes_with_wrong_count == 0


def test_esios_months_are_all_there_once(outcome):
    w = outcome.warehouse
    assert w.esios_months_wrong == []
    assert w.esios_duplicate_hours == 0
    assert w.esios_rows == sum(expected_hours(date.fromisoformat(m)) for m in outcome.months)
    assert w.sql_rows == w.csv_rows == w.esios_rows


def test_no_process_outlives_the_platform(outcome):
    assert outcome.leftover_processes == []
