"""The Spark resource: configured from the environment, started only when an asset uses it,
and a cluster report read from the live session."""

from __future__ import annotations

import getpass
import os
import platform
import time

import dagster as dg
import pyspark
import pytest
from dagster_pyspark import LazyPySparkResource

from resources import spark as spark_module
from resources.spark import (
    cluster_facts,
    collect_with_progress,
    local_cores,
    spark_config_from_env,
    spark_resource_from_env,
    to_spark_uri,
)

SPARK_ENV = ("SPARK_MASTER", "SPARK_DRIVER_MEMORY", "SPARK_JARS_PACKAGES", "S3_BUCKET")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (*SPARK_ENV, "S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


@pytest.fixture
def live_spark():
    """The test run's one local[1] session (shared with tests/weather_assets; never stopped
    here, the owning fixture stops it at the end of the run)."""
    from tests.weather_assets.conftest import shared_spark_session

    return shared_spark_session()


@pytest.mark.parametrize(
    ("master", "cores"),
    [
        ("local", 1),
        ("local[3]", 3),
        ("local[*]", os.cpu_count()),
        ("local[2,4]", 2),
        ("spark://head:7077", None),
        ("yarn", None),
    ],
)
def test_local_cores(master, cores):
    assert local_cores(master) == cores


def test_defaults_are_local_utc_dynamic_overwrite_and_no_s3(clean_env, tmp_path):
    conf = spark_config_from_env()
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.sources.partitionOverwriteMode"] == "dynamic"
    assert conf["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert conf["spark.sql.shuffle.partitions"] == str(max(2, 2 * (os.cpu_count() or 1)))
    assert conf["spark.sql.warehouse.dir"] == str((tmp_path / "data" / "spark-warehouse").resolve())
    assert not any("s3a" in key for key in conf)
    assert "spark.driver.memory" not in conf and "spark.jars.packages" not in conf


def test_cluster_master_and_s3_compatible_store(clean_env):
    clean_env.setenv("SPARK_MASTER", "spark://head:7077")
    clean_env.setenv("SPARK_DRIVER_MEMORY", "4g")
    clean_env.setenv("SPARK_JARS_PACKAGES", "org.apache.hadoop:hadoop-aws:3.5.0")
    clean_env.setenv("S3_BUCKET", "weather")
    clean_env.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    conf = spark_config_from_env()
    assert conf["spark.master"] == "spark://head:7077"
    assert "spark.sql.shuffle.partitions" not in conf, "a cluster keeps its own default"
    assert conf["spark.driver.memory"] == "4g"
    assert conf["spark.jars.packages"] == "org.apache.hadoop:hadoop-aws:3.5.0"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"


def test_aws_s3_needs_no_endpoint(clean_env):
    clean_env.setenv("S3_BUCKET", "weather")
    conf = spark_config_from_env()
    assert conf["spark.hadoop.fs.s3a.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert "spark.hadoop.fs.s3a.endpoint" not in conf
    assert "spark.hadoop.fs.s3a.path.style.access" not in conf


def test_extra_settings_win(clean_env):
    conf = spark_config_from_env({"spark.sql.shuffle.partitions": "7"})
    assert conf["spark.sql.shuffle.partitions"] == "7"


def test_object_store_uris_become_s3a():
    assert to_spark_uri("s3://bucket/dagster/weather/x") == "s3a://bucket/dagster/weather/x"
    assert to_spark_uri("/data/objects/weather/x") == "/data/objects/weather/x"


def test_no_session_starts_until_an_asset_uses_it(clean_env):
    """Definitions load and resource setup must not pay the session start (the UI reloads
    definitions often); only reading ``.spark_session`` does, once per run."""
    started = []

    def fake_session_factory(conf):
        started.append(conf)
        return object()

    clean_env.setattr("dagster_pyspark.resources.spark_session_from_config", fake_session_factory)

    @dg.asset
    def ignores_spark(spark: LazyPySparkResource) -> None:
        pass

    @dg.asset
    def uses_spark(spark: LazyPySparkResource) -> None:
        assert spark.spark_session is spark.spark_session  # same session on every access

    resource = spark_resource_from_env()
    defs = dg.Definitions(assets=[ignores_spark, uses_spark], resources={"spark": resource})
    dg.Definitions.validate_loadable(defs)
    with dg.build_resources({"spark": resource}):
        pass
    assert dg.materialize([ignores_spark], resources={"spark": resource}).success
    assert started == []

    assert dg.materialize([uses_spark], resources={"spark": resource}).success
    assert len(started) == 1
    assert started[0]["spark.sql.session.timeZone"] == "UTC"


def test_the_resource_runs_spark_in_an_asset(clean_env, live_spark):
    clean_env.setenv("SPARK_MASTER", "local[1]")

    @dg.asset
    def counted(spark: LazyPySparkResource) -> int:
        return spark.spark_session.range(5).count()

    result = dg.materialize(
        [counted], resources={"spark": spark_resource_from_env({"spark.ui.enabled": "false"})}
    )
    assert result.output_for_node("counted") == 5


def test_cluster_facts_come_from_the_live_session(live_spark):
    facts = cluster_facts(live_spark)
    assert {
        "host",
        "spark_version",
        "spark_home",
        "master",
        "app_id",
        "executors",
        "default_parallelism",
        "user",
        "driver_memory",
        "java_version",
        "catalog_implementation",
        "warehouse_dir",
        "metastore",
        "python_version",
    } <= facts.keys()
    assert facts["master"] == "local[1]"
    assert facts["spark_version"] == pyspark.__version__
    assert facts["app_id"] == live_spark.sparkContext.applicationId
    assert facts["host"]
    assert os.path.isdir(facts["spark_home"])
    assert facts["default_parallelism"] == 1
    assert facts["user"] == os.environ.get("SPARK_USER", getpass.getuser())
    assert int(facts["java_version"].split(".")[0]) >= 17
    assert facts["python_version"] == platform.python_version()
    assert facts["driver_memory"] == "1g"
    assert 0 < facts["driver_max_heap_bytes"] <= 2**30
    # local mode: the driver is the one executor, with the local[N] cores.
    (executor,) = facts["executors"]
    assert executor["id"] == "driver"
    assert executor["cores"] == 1 == facts["total_cores"]
    assert executor["memory"] == "1g"
    assert executor["storage_memory_bytes"] > 0
    assert facts["catalog_implementation"] == "in-memory"
    assert facts["metastore"].startswith("in-memory") and facts["metastore_location"] is None
    assert facts["warehouse_dir"].endswith("warehouse")
    assert facts["session_time_zone"] == "UTC"


def test_hive_catalog_reports_derby_in_the_working_directory(live_spark):
    """Hive support is not enabled here, so the Derby branch is checked with the setting faked."""
    location = spark_module._metastore(live_spark, "hive", "/srv/job")
    assert location == ("embedded Derby (Hive default)", "/srv/job/metastore_db")


def test_parquet_replacement_swaps_in_only_complete_datasets(live_spark, tmp_path):
    from resources.spark import write_parquet_replacing

    target = str(tmp_path / "stage")
    write_parquet_replacing(live_spark.range(3), target)
    assert sorted(r.id for r in live_spark.read.parquet(target).collect()) == [0, 1, 2]
    write_parquet_replacing(live_spark.range(5, 7), target)
    assert sorted(r.id for r in live_spark.read.parquet(target).collect()) == [5, 6]

    # A write that fails half-way leaves the previous dataset readable.
    failing = live_spark.range(4).selectExpr("assert_true(id < 2) AS id")
    with pytest.raises(Exception, match="id < 2"):
        write_parquet_replacing(failing, target)
    assert sorted(r.id for r in live_spark.read.parquet(target).collect()) == [5, 6]

    # A crash between the two renames (target moved aside) is undone by the next call.
    (tmp_path / "stage").rename(tmp_path / "stage._previous")
    write_parquet_replacing(live_spark.range(1), target)
    assert [r.id for r in live_spark.read.parquet(target).collect()] == [0]
    assert not (tmp_path / "stage._previous").exists()
    assert not (tmp_path / "stage._staging").exists()


def test_collect_with_progress_reports_tasks_and_returns_rows(live_spark):
    """The fan-out's run log: (done, total) tasks while it runs, all done at the end."""

    def slow(index, rows):
        time.sleep(0.3)
        return [(index, row) for row in rows]

    reports: list[tuple[int, int]] = []
    rdd = live_spark.sparkContext.parallelize(range(8), 4).mapPartitionsWithIndex(slow)
    rows = collect_with_progress(rdd, lambda *r: reports.append(r), every_s=0.2)
    assert sorted(row for _, row in rows) == list(range(8))
    assert reports[-1] == (4, 4)
    assert all(total in (0, 4) and 0 <= done <= total for done, total in reports)
    assert len(reports) >= 2  # at least one report while running, one at the end


def test_collect_with_progress_raises_the_jobs_error(live_spark):
    def broken(_index, _rows):
        raise RuntimeError("item 3 is broken")

    rdd = live_spark.sparkContext.parallelize(range(4), 2).mapPartitionsWithIndex(broken)
    with pytest.raises(Exception, match="item 3 is broken"):
        collect_with_progress(rdd, lambda *_: None, every_s=0.1)
