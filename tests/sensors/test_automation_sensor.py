"""The automation condition sensor is in the code location and on by default, so `make run`
evaluates every asset's condition without anyone switching it on."""

from __future__ import annotations

import dagster as dg


def test_automation_sensor_is_on_by_default_and_targets_the_conditioned_assets():
    from definitions import defs

    sensor = defs.get_sensor_def("automation_condition_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert 10 <= sensor.minimum_interval_seconds <= 60
    graph = defs.resolve_asset_graph()
    targeted = sensor.asset_selection.resolve(graph)
    conditioned = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert {"temperature_model", "temperature_actuals", "stock_prices", "volume_model"} <= {
        k.to_user_string() for k in conditioned
    }
    assert conditioned <= targeted


def test_the_replaced_timing_guesses_are_gone():
    from definitions import defs

    schedules = {s.name for s in defs.schedules or []}
    sensors = {s.name for s in defs.sensors or []}
    assert not schedules & {
        "temperature_training_job_schedule",
        "observations_daily_job_schedule",
        "temperature_hourly_job_schedule",
    }
    assert not sensors & {"temperature_bootstrap_sensor", "market_bootstrap_sensor"}
    assert {"rain_minute_sensor", "nasa_queries_sensor"} <= sensors


def test_make_runs_instance_evaluates_automation_sensors_in_its_daemon(tmp_path, monkeypatch):
    """Guard: the dagster.yaml `make run` writes keeps 1.13's `auto_materialize: use_sensors`
    default, so the daemon `dagster dev` starts runs the asset daemon that evaluates the sensor."""
    from resources.instance_config import main

    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    assert main([str(tmp_path / "dagster.yaml")]) == 0
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.auto_materialize_use_sensors
        assert "ASSET" in instance.get_required_daemon_types()
