"""Issue #8.2, reduced for CI: a minute backfill and the ESIOS backfill at once, through the run
queue, on the multiprocess executor: every run succeeds, no DuckDB lock conflict, every row once.

The daemon, the CLIs and every run are real processes (see tests/hardening/queue_harness.py);
the full size (60 minutes, 24 months) is benchmarks/concurrency.py.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from esios_assets.transform import expected_hours
from tests.hardening import queue_harness as harness
from tests.hardening.network_audit import connects_during, socket_connects, step_intervals
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.assets import RAIN_ASSETS
from weather_assets.rain.checks import RAIN_CHECKS

# Each minute is a run of eight steps, each a new process (~3 s to start on two idle cores); six
# write or read the warehouse and hold the duckdb pool slot, the minute's loading and the lag
# check (network I/O) do not. Two minutes and one month (11 steps) keep the test near three
# minutes. Both rain runs start together (see run_concurrent_backfills).
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


# The steps of a minute run that do network I/O and touch no table: never in the pool.
RAIN_STEPS_OUTSIDE_POOL = 2  # rain_forecasts.load_rain_minutes, rain_forecasts_rain_stream_lag


def test_the_duckdb_pool_serialized_every_writer_step(outcome):
    for run in outcome.rain_runs:
        assert run.steps_outside_pool == RAIN_STEPS_OUTSIDE_POOL, run.run_id
        pooled = {label.split(":", 1)[1] for label in (i[2] for i in run.pool_intervals)}
        assert {"rain_forecasts.write_rain_forecasts", "rolling_precipitation_sum"} <= pooled
        assert "rain_forecasts.load_rain_minutes" not in pooled
        assert "rain_forecasts_rain_stream_lag" not in pooled
    assert all(r.steps_outside_pool == 0 for r in outcome.esios_runs)
    assert len(outcome.pool_intervals) == sum(r.steps - r.steps_outside_pool for r in outcome.runs)
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


# --- no network I/O while a rain step holds the pool (in-process, real log) -------------------


def test_pooled_rain_steps_open_no_network_connection(nats_server, platform_resources, instance):
    """With the log reachable, the minute's loading and the lag check connect to it, outside
    the pool; the steps that hold the duckdb slot open no connection at all."""
    key = (datetime.now(UTC) - timedelta(minutes=2)).strftime(MINUTE_FORMAT)
    with socket_connects() as connects:
        result = dg.materialize(
            [*RAIN_ASSETS, *RAIN_CHECKS],
            resources=platform_resources,
            instance=instance,
            partition_key=key,
        )
    assert result.success
    steps = step_intervals(instance, result.run_id)
    pooled = {k for k, (pool, _, _) in steps.items() if pool == harness.DUCKDB_POOL}
    assert pooled == {
        "rain_forecasts.write_rain_forecasts",
        "rain_forecasts_rain_forecasts_unique_per_minute",
        "rain_forecasts_rain_forecasts_rates_non_negative",
        "rain_forecasts_rain_forecasts_nowcast_coverage",
        "rolling_precipitation_sum",
        "rolling_precipitation_sum_rolling_precipitation_sum_one_row_per_coordinate",
    }
    assert set(steps) - pooled == {
        "rain_forecasts.load_rain_minutes",
        "rain_forecasts_rain_stream_lag",
    }

    def inside(step: str) -> list[object]:
        return connects_during(steps, connects, step)

    assert inside("rain_forecasts.load_rain_minutes"), "the log was never reached: vacuous"
    assert {step: inside(step) for step in sorted(pooled)} == {step: [] for step in sorted(pooled)}


# --- NASA: the API calls and downloads outside the pool, the warehouse writers in it ----------


def test_nasa_fetch_steps_are_outside_the_duckdb_pool_and_writers_inside():
    """Paging through the NASA API (minutes under its hourly limit) and downloading images
    must not hold the one ``duckdb`` slot; the steps that write or check the table do."""
    from nasa_assets.assets import NASA_ASSETS
    from nasa_assets.checks import NASA_CHECKS

    pools = {a.key.to_user_string(): a.op.pool for a in NASA_ASSETS}
    pools |= {key.name: c.node_def.pool for c in NASA_CHECKS for key in c.check_keys}
    assert pools == {
        "nasa_search_results": None,  # the API search, staged in the object store
        "nasa_image_search": harness.DUCKDB_POOL,  # the staged rows into the warehouse
        "nasa_images": "spark",  # downloads; reads the table read-only
        "nasa_search_ids_unique": harness.DUCKDB_POOL,
        "nasa_images_stored": None,  # lists the object store; reads the table read-only
    }


def test_the_spark_cluster_report_probes_outside_the_duckdb_pool():
    """Starting Spark and probing the cloud's metadata endpoints (network I/O, up to a second)
    happen in a step of their own, outside the one ``duckdb`` slot; only the write holds it."""
    from weather_assets.observations.assets import spark_cluster_report

    graph = spark_cluster_report.node_def
    pools = {node.name: node.definition.pool for node in graph.nodes}
    assert pools == {
        "read_spark_cluster": "spark",
        "write_spark_cluster_report": harness.DUCKDB_POOL,
    }
