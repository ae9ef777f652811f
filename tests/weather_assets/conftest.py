"""One Spark session for the whole test run: local[1], tiny shuffles, no UI, a temp warehouse.

Starting a session costs seconds and the machine has two cores, so every Spark test shares
this one. ``shared_spark_session()`` is a plain function so test modules outside this folder
(tests/resources) reuse the same session instead of starting a second one.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

_session = None


def shared_spark_session():
    """Create (once) and return the test session; later calls return the same one."""
    global _session
    if _session is None:
        from resources.spark import session_from, spark_config

        root = Path(tempfile.mkdtemp(prefix="spark-tests-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        conf = spark_config(
            "local[1]",
            warehouse_dir=root / "warehouse",
            extra={
                "spark.app.name": "weather-platform-tests",
                "spark.ui.enabled": "false",
                "spark.sql.shuffle.partitions": "2",
                "spark.default.parallelism": "1",
                "spark.driver.extraJavaOptions": f"-Dderby.system.home={root / 'derby'}",
            },
        )
        _session = session_from(conf, log_level="ERROR")
    return _session


@pytest.fixture(scope="session")
def spark():
    """The shared local[1] session; stopped when the test run ends."""
    global _session
    session = shared_spark_session()
    yield session
    session.stop()
    _session = None
