"""The NASA queries sensor: queries.yaml -> partitions, and one run per never-built query."""

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


def test_adds_new_queries_and_requests_each_once(instance, queries_file):
    result = _tick(instance)
    assert isinstance(result, dg.SensorResult)
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == "nasa_queries"
    assert list(add.partition_keys) == ["moon", "apollo 11"]
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("moon", "nasa:moon"),
        ("apollo 11", "nasa:apollo 11"),
    ]


def test_a_query_added_from_the_ui_is_built_and_built_queries_are_left_alone(
    instance, queries_file
):
    instance.add_dynamic_partitions("nasa_queries", ["moon", "apollo 11", "mars rover"])
    for query in ("moon", "apollo 11"):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="nasa_images", partition=query)
        )
    result = _tick(instance)
    assert not result.dynamic_partitions_requests
    assert [r.partition_key for r in result.run_requests] == ["mars rover"]

    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="nasa_images", partition="mars rover")
    )
    assert isinstance(_tick(instance), dg.SkipReason)


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
