from datetime import UTC, datetime

import dagster as dg

import sensors.temperature as bootstrap
from resources import clock
from sensors.temperature import next_bootstrap_step

NOW = datetime(2026, 11, 22, 16, 40, tzinfo=UTC)
DAYS = {f"2026-11-{d:02d}" for d in range(16, 22)}
HOURS = {f"2026-11-21-{h:02d}:00" for h in range(15, 24)} | {
    f"2026-11-22-{h:02d}:00" for h in range(16)
}


def test_fresh_instance_starts_with_six_days_of_observations():
    step = next_bootstrap_step(NOW, set(), False, set(), set())
    assert (step.job_name, step.first, step.last) == (
        "observations_daily_job",
        "2026-11-16",
        "2026-11-21",
    )


def test_then_the_model_then_25_hours_of_actuals_then_the_first_prediction():
    assert (
        next_bootstrap_step(NOW, DAYS, False, set(), set()).job_name == "temperature_training_job"
    )
    step = next_bootstrap_step(NOW, DAYS, True, set(), set())
    assert (step.job_name, step.first, step.last) == (
        "temperature_actuals_job",
        "2026-11-21-15:00",
        "2026-11-22-15:00",
    )
    step = next_bootstrap_step(NOW, DAYS, True, HOURS, set())
    assert (step.job_name, step.first) == ("temperature_hourly_job", "2026-11-22-15:00")
    assert next_bootstrap_step(NOW, DAYS, True, HOURS, {"2026-11-22-15:00"}) is None


def test_only_missing_days_are_requested():
    step = next_bootstrap_step(NOW, DAYS - {"2026-11-20", "2026-11-21"}, False, set(), set())
    assert (step.first, step.last) == ("2026-11-20", "2026-11-21")


def test_sensor_requests_a_ranged_run_with_a_stable_run_key(monkeypatch, instance):
    monkeypatch.setattr(clock, "utcnow", lambda: NOW)
    request = bootstrap.temperature_bootstrap_sensor(dg.build_sensor_context(instance=instance))
    assert request.job_name == "observations_daily_job"
    assert request.run_key == "bootstrap:observations_daily_job:2026-11-16...2026-11-21"
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-16"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-21"


def test_the_just_ended_hour_is_left_to_the_schedule_for_ten_minutes():
    early = NOW.replace(minute=5)
    hours = (HOURS - {"2026-11-22-15:00"}) | {"2026-11-21-14:00"}
    step = next_bootstrap_step(early, DAYS, True, hours, set())
    assert (step.job_name, step.first) == ("temperature_hourly_job", "2026-11-22-14:00")
