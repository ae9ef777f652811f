"""The NASA queries sensor: queries.yaml -> partitions (runs come from the automation condition)."""

from __future__ import annotations

import dagster as dg
import pytest

from sensors import nasa as nasa_sensor_module
from sensors.nasa import nasa_queries_sensor


@pytest.fixture
def queries_file(tmp_path, monkeypatch):
    path = tmp_path / "queries.yaml"
    path.write_text("queries:\n  - moon\n  - apollo 11\n")
    monkeypatch.setattr(nasa_sensor_module, "QUERIES_FILE", path)
    return path


def _tick(instance):
    return nasa_queries_sensor(dg.build_sensor_context(instance=instance))


def test_adds_new_queries_and_requests_no_run(instance, queries_file):
    """The automation condition materializes new partitions (tests/nasa_assets/
    test_nasa_automation.py): the sensor only registers the file's queries."""
    result = _tick(instance)
    assert isinstance(result, dg.SensorResult)
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == "nasa_queries"
    assert list(add.partition_keys) == ["moon", "apollo 11"]
    assert not result.run_requests


def test_registered_queries_are_a_skip_and_ui_queries_are_left_alone(instance, queries_file):
    instance.add_dynamic_partitions("nasa_queries", ["moon", "mars rover"])
    result = _tick(instance)
    (add,) = result.dynamic_partitions_requests
    assert list(add.partition_keys) == ["apollo 11"]
    assert not result.run_requests
    instance.add_dynamic_partitions("nasa_queries", ["apollo 11"])
    skipped = _tick(instance)
    assert isinstance(skipped, dg.SkipReason)
    assert "2 queries in queries.yaml, all registered" in skipped.skip_message


def test_a_broken_queries_file_is_a_skip_naming_it(instance, queries_file):
    queries_file.write_text("queries: moon\n")
    skipped = _tick(instance)
    assert isinstance(skipped, dg.SkipReason)
    assert "queries.yaml" in skipped.skip_message and "must be a list" in skipped.skip_message


def test_a_file_entry_not_in_normal_form_is_a_skip_naming_its_normal_form(instance, queries_file):
    queries_file.write_text('queries:\n  - "moon "\n')
    skipped = _tick(instance)
    assert isinstance(skipped, dg.SkipReason)
    assert "'moon '" in skipped.skip_message and "normal form 'moon'" in skipped.skip_message
    assert list(instance.get_dynamic_partitions("nasa_queries")) == []
