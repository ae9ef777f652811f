"""The platform's definitions, pinned: a layout change must not change what Dagster sees.

Every asset (key, deps, group, kinds, partitions, backfill policy, pool, checks, storage
metadata, column schema), every check, job, schedule and sensor (target, default status) and
every resource key is rendered to ``snapshots/definitions.json``; the test compares the live
definitions with it. After a deliberate change, regenerate it and review the diff:

    UPDATE_DEFINITIONS_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py

The minute partitions start a fixed number of days before today, so that start is written
relative to today; every other value is literal.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).with_name("snapshots") / "definitions.json"
# A rolling start (the rain minutes) is at most this many days back (RAIN_PARTITION_DAYS <= 69).
ROLLING_START_DAYS = 70


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        start = partitions_def.start.astimezone(UTC)
        age = (datetime.now(UTC).date() - start.date()).days
        return {
            "type": "time_window",
            "cron_schedule": partitions_def.cron_schedule,
            "fmt": partitions_def.fmt,
            "timezone": partitions_def.timezone,
            "start": f"today - {age} days"
            if age <= ROLLING_START_DAYS
            else partitions_def.start.isoformat(),
            "end_offset": partitions_def.end_offset,
        }
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return {"type": "dynamic", "name": partitions_def.name}
    return {"type": type(partitions_def).__name__, "repr": repr(partitions_def)}


def _backfill(policy: dg.BackfillPolicy | None) -> str | None:
    return None if policy is None else f"{policy.policy_type.value}:{policy.max_partitions_per_run}"


def _columns(metadata: dict) -> list[list[str | None]] | None:
    schema = metadata.get("dagster/column_schema")
    if schema is None:
        return None
    return [[c.name, c.type, c.description] for c in schema.columns]


def _assets(graph) -> dict:
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        out[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": _backfill(node.backfill_policy),
            "pools": sorted(node.pools or []),
            "io_manager_key": node.io_manager_key,
            "automation_condition": None
            if node.automation_condition is None
            else type(node.automation_condition).__name__,
            "has_description": bool(node.description),
            "storage": {
                k: str(v)
                for k, v in sorted(node.metadata.items())
                if k in ("schema", "partition_expr")
            },
            "columns": _columns(node.metadata),
            "checks": sorted(c.name for c in node.check_keys),
        }
    return out


def _checks(graph) -> dict:
    out = {}
    for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(key)
        out[f"{key.asset_key.to_user_string()}:{key.name}"] = {
            "blocking": spec.blocking,
            "additional_deps": sorted(d.asset_key.to_user_string() for d in spec.additional_deps),
            "has_description": bool(spec.description),
        }
    for assets_def in graph.assets_defs:
        for key in assets_def.check_keys:
            name = f"{key.asset_key.to_user_string()}:{key.name}"
            if name in out and not assets_def.keys:
                out[name]["pool"] = assets_def.op.pool
    return out


def _jobs(repo) -> dict:
    out = {}
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        selected = job.asset_layer.selected_asset_keys if job.asset_layer else set()
        out[job.name] = {
            "assets": sorted(k.to_user_string() for k in selected),
            "ops": sorted(node.name for node in job.nodes_in_topological_order)
            if not selected
            else [],
            "executor": job.executor_def.name,
            "partitions": _partitions(job.partitions_def),
            "tags": dict(sorted(job.tags.items())),
            "has_description": bool(job.description),
        }
    return out


def _schedules(repo) -> dict:
    return {
        s.name: {
            "job": s.job_name,
            "cron_schedule": s.cron_schedule,
            "timezone": s.execution_timezone,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }


def _sensors(repo) -> dict:
    out = {}
    for sensor in sorted(repo.sensor_defs, key=lambda s: s.name):
        jobs = sorted(t.job_name for t in sensor.targets) if sensor.targets else []
        out[sensor.name] = {
            "type": sensor.sensor_type.value,
            "jobs": jobs,
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
        }
    return out


def snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    return {
        "assets": _assets(graph),
        "checks": _checks(graph),
        "jobs": _jobs(repo),
        "schedules": _schedules(repo),
        "sensors": _sensors(repo),
        "resources": sorted(repo.get_top_level_resources()),
    }


@pytest.fixture
def loaded_defs(platform_env):
    """The root definitions, loaded as `dagster dev` loads them (offline defaults)."""
    from definitions import defs

    return defs


def test_definitions_match_the_snapshot(loaded_defs):
    current = snapshot(loaded_defs)
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_DEFINITIONS_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    expected = json.loads(SNAPSHOT.read_text())
    for section in expected:
        assert current[section] == expected[section], f"{section} differ from {SNAPSHOT.name}"
    assert set(current) == set(expected)


def test_snapshot_covers_every_definition(loaded_defs):
    """The snapshot is not vacuous: it names every asset, check, job, schedule and sensor."""
    expected = json.loads(SNAPSHOT.read_text())
    graph = loaded_defs.resolve_asset_graph()
    assert len(expected["assets"]) == len(graph.get_all_asset_keys()) > 15
    assert len(expected["checks"]) == len(graph.asset_check_keys) > 10
    repo = loaded_defs.get_repository_def()
    assert len(expected["sensors"]) == len(repo.sensor_defs) > 0
    assert len(expected["schedules"]) == len(repo.schedule_defs) > 0
    assert all(a["group"] for a in expected["assets"].values())
    assert all(a["kinds"] for a in expected["assets"].values())
