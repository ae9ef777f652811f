"""The code location: loads, stays side-effect free, and every asset is documented."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg

from tests.conftest import REPO


def test_definitions_load_and_validate():
    from definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("rain_minute_job")
    assert defs.resolve_job_def("rain_retention_job")


def test_every_asset_has_description_group_kinds_and_columns():
    from definitions import defs

    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description, f"{name} has no description"
        assert spec.group_name and spec.group_name != "default", f"{name} has no group"
        assert spec.kinds, f"{name} has no kinds"
        assert "dagster/column_schema" in spec.metadata, f"{name} has no column metadata"
        if "duckdb" in spec.kinds:
            assert spec.metadata.get("schema") == spec.group_name, f"{name}: schema != group"


def test_asset_keys_are_bare_names():
    from definitions import defs

    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {"rain_forecasts", "rolling_precipitation_sum"} <= keys


def test_import_has_no_side_effects(tmp_path):
    """Importing definitions writes nothing, starts no Spark and opens no socket."""
    data_dir = tmp_path / "data"
    code = (
        "import json, socket, sys\n"
        "opened = []\n"
        "real = socket.socket.connect\n"
        "socket.socket.connect = lambda self, addr: opened.append(str(addr)) or real(self, addr)\n"
        "import definitions\n"
        "from pyspark import SparkContext\n"
        "print(json.dumps({'spark': SparkContext._active_spark_context is not None"
        " or SparkContext._gateway is not None, 'sockets': opened}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"spark": False, "sockets": []}
    assert not data_dir.exists(), "importing definitions created the data directory"
