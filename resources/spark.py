"""Spark for the PySpark assets: a session started on first use, and what it runs on.

The Dagster UI reloads definitions often and a local session costs ~6 s to start, so the
resource (``dagster_pyspark.LazyPySparkResource``) builds nothing until an asset reads
``.spark_session``.

Configuration (``resources.settings``: the environment and ``.env``, read when the resource is
built, i.e. at definitions load):

- ``SPARK_MASTER``: ``local[*]`` by default; ``spark://host:7077``, ``yarn`` or ``k8s://...``
  run the same code on a cluster.
- ``SPARK_DRIVER_MEMORY``: e.g. ``4g``; in local mode the driver is the only executor, so this
  is the job's memory (Spark's default is 1g).
- ``S3_BUCKET`` / ``S3_ENDPOINT_URL``: when set, the s3a filesystem is configured (endpoint,
  path-style access for MinIO and other S3-compatible stores, TLS from the URL scheme);
  credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``... or an instance role).
  Paths handed to Spark must use ``s3a://`` (see ``to_spark_uri``).
- ``SPARK_JARS_PACKAGES``: Maven coordinates Spark downloads at start, e.g.
  ``org.apache.hadoop:hadoop-aws:3.5.0`` (match the Hadoop in ``pyspark/jars``). S3 needs
  hadoop-aws, which is not bundled with pyspark and cannot be fetched offline, so it is never
  required for local runs; a cluster usually ships it in its image instead.

Going to a cluster is therefore ``SPARK_MASTER`` + the s3a settings: the cluster's executors
cannot see the driver's local ``data/`` folder, so inputs and outputs must be on S3.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dagster_pyspark import LazyPySparkResource

from resources.settings import DEFAULT_SPARK_MASTER, Settings, load_settings

DEFAULT_MASTER = DEFAULT_SPARK_MASTER
# Dagster pool of every PySpark asset: one Spark job at a time on a laptop (dagster.yaml limit).
SPARK_POOL = "spark"
APP_NAME = "weather-data-platform"
SPARK_DEFAULT_DRIVER_MEMORY = "1g"

# Python tasks (the NASA downloads) must run in an interpreter that has the platform's
# packages. PySpark starts ``$PYSPARK_PYTHON``, else whatever "python3" is on PATH (the
# ``spark.pyspark.python`` setting only reaches spark-submit), so default it to this one.
# Cluster executors need the platform's packages in their own image instead.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


class _HidePy4jPayloads(logging.Filter):
    """py4j's DEBUG wire trace prints every command sent to the JVM, arguments included: the
    pickled Spark tasks, and with them NASA_API_KEY. Keep the trace, drop the data."""

    def filter(self, record: logging.LogRecord) -> bool:
        head, sep, payload = str(record.msg).partition(": ")
        if sep and head in ("Command to send", "Answer received"):
            record.msg, record.args = f"{head}: <{len(payload)} characters>", ()
        return True


for _name in ("py4j.clientserver", "py4j.java_gateway"):
    logging.getLogger(_name).addFilter(_HidePy4jPayloads())

_LOCAL_MASTER = re.compile(r"^local(?:\[(\*|\d+)(?:,\s*\d+)?\])?$")


def local_cores(master: str) -> int | None:
    """Cores a ``local``/``local[N]``/``local[*]``/``local[N,F]`` master uses; None for clusters."""
    match = _LOCAL_MASTER.match(master.strip())
    if not match:
        return None
    threads = match.group(1)
    if threads is None:
        return 1
    if threads == "*":
        return os.cpu_count() or 1
    return int(threads)


def spark_config(
    master: str = DEFAULT_MASTER,
    *,
    data_dir: str | Path = "data",
    warehouse_dir: str | Path | None = None,
    driver_memory: str | None = None,
    s3_bucket: str | None = None,
    s3_endpoint_url: str | None = None,
    jars_packages: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The session settings, as flat ``spark.*`` keys (what ``LazyPySparkResource`` expects).

    - ``spark.sql.session.timeZone=UTC``: readings are UTC; Spark would otherwise render and
      bucket timestamps in the JVM's zone.
    - ``spark.sql.sources.partitionOverwriteMode=dynamic``: an overwrite of a partitioned parquet
      dataset replaces only the partitions being written, so re-running one day is idempotent.
    - ``spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS``: Spark's INT96 default is read
      back as naive nanoseconds by polars and DuckDB; micros carry "adjusted to UTC".
    - shuffle partitions: 2 per local core (Spark's 200 means 200 tiny tasks per shuffle on a
      laptop); Spark's default is kept for clusters.
    - the warehouse (``spark.sql.warehouse.dir``) goes under ``DATA_DIR`` instead of the working
      directory, with everything else the platform keeps locally.
    """
    conf: dict[str, str] = {
        "spark.master": master,
        "spark.app.name": APP_NAME,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.warehouse.dir": str(
            Path(warehouse_dir or Path(data_dir) / "spark-warehouse").resolve()
        ),
        # Console progress bars interleave with Dagster's captured logs.
        "spark.ui.showConsoleProgress": "false",
    }
    cores = local_cores(master)
    if cores is not None:
        conf["spark.sql.shuffle.partitions"] = str(max(2, 2 * cores))
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    if jars_packages:
        conf["spark.jars.packages"] = jars_packages
    if s3_bucket or s3_endpoint_url:
        conf.update(s3a_config(s3_endpoint_url))
    conf.update(extra or {})
    return conf


def s3a_config(endpoint_url: str | None) -> dict[str, str]:
    """Hadoop s3a settings for AWS (no endpoint) or an S3-compatible store such as MinIO."""
    # Spark's classic file committer is kept on purpose: the S3A committers
    # (PathOutputCommitProtocol) refuse dynamic partition overwrite, which the daily assets use.
    conf = {"spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    if endpoint_url:
        conf.update(
            {
                "spark.hadoop.fs.s3a.endpoint": endpoint_url,
                # MinIO and most self-hosted stores have no per-bucket DNS names.
                "spark.hadoop.fs.s3a.path.style.access": "true",
                "spark.hadoop.fs.s3a.connection.ssl.enabled": str(
                    endpoint_url.lower().startswith("https://")
                ).lower(),
            }
        )
    return conf


def spark_config_from_env(
    extra: Mapping[str, str] | None = None, settings: Settings | None = None
) -> dict[str, str]:
    """``spark_config`` from the settings ``SPARK_MASTER``, ``SPARK_DRIVER_MEMORY``,
    ``SPARK_JARS_PACKAGES``, ``DATA_DIR``, ``S3_BUCKET`` and ``S3_ENDPOINT_URL`` (``settings``, or
    ``load_settings()`` now); ``extra`` wins over all of them."""
    settings = settings or load_settings()
    return spark_config(
        settings.spark_master,
        data_dir=settings.data_dir,
        driver_memory=settings.spark_driver_memory,
        s3_bucket=settings.s3_bucket,
        s3_endpoint_url=settings.s3_endpoint_url,
        jars_packages=settings.spark_jars_packages,
        extra=extra,
    )


def spark_resource_from_env(
    extra: Mapping[str, str] | None = None, settings: Settings | None = None
) -> LazyPySparkResource:
    """The ``spark`` resource for ``definitions.py``: configured now, started on first use."""
    return LazyPySparkResource(spark_config=spark_config_from_env(extra, settings))


def session_from(conf: Mapping[str, str], log_level: str = "WARN") -> Any:
    """A SparkSession with ``conf`` (e.g. ``spark_config_from_env``), outside a Dagster run:
    the stream processor's long-running query, the tests' shared session."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    return spark


def to_spark_uri(uri: str) -> str:
    """Object-store URIs are ``s3://`` (boto3's spelling); Hadoop reads S3 through ``s3a://``."""
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def write_parquet_replacing(df: Any, uri: str) -> None:
    """Write ``df`` as the whole parquet dataset at ``uri``, swapping it in only when complete.

    Spark's overwrite deletes the old files before writing the new ones, so a job killed in
    between leaves neither. Here the new dataset is written beside the old one and renamed into
    place through Hadoop's filesystem (local, HDFS or s3a); a crash before the swap leaves the
    old dataset untouched, and one between the two renames is undone by the next call.
    """
    spark = df.sparkSession
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    base = uri.rstrip("/")
    target, staging, previous = (
        hadoop_path(base),
        hadoop_path(f"{base}._staging"),
        hadoop_path(f"{base}._previous"),
    )
    fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(target) and fs.exists(previous):
        fs.rename(previous, target)
    fs.delete(staging, True)
    df.write.mode("overwrite").parquet(f"{base}._staging")
    fs.delete(previous, True)
    if fs.exists(target):
        fs.rename(target, previous)
    fs.rename(staging, target)
    fs.delete(previous, True)


def collect_with_progress(
    rdd: Any,
    report: Callable[[int, int], None],
    *,
    every_s: float = 5.0,
    description: str = "",
) -> list[Any]:
    """``rdd.collect()`` while ``report(done_tasks, total_tasks)`` is called every ``every_s``
    seconds (and once at the end), from Spark's status tracker.

    A long fan-out (thousands of downloads) would otherwise be silent in the run log until it
    ends. The job runs in a worker thread under its own job group, which is what lets the
    tracker find its stages; an exception in the job is re-raised here.
    """
    sc = rdd.context
    group = f"collect-{uuid.uuid4().hex}"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            sc.setJobGroup(group, description or group, interruptOnCancel=True)
            outcome["rows"] = rdd.collect()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    def tasks() -> tuple[int, int]:
        done = total = 0
        tracker = sc.statusTracker()
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage:
                    done += stage.numCompletedTasks
                    total += stage.numTasks
        return done, total

    worker = threading.Thread(target=run, name=group, daemon=True)
    worker.start()
    try:
        while True:
            worker.join(every_s)
            if not worker.is_alive():
                break
            report(*tasks())
    except BaseException:
        sc.cancelJobGroup(group)
        raise
    if "error" in outcome:
        raise outcome["error"]
    report(*tasks())
    return outcome["rows"]


# --- cluster report -----------------------------------------------------------------------


def cluster_facts(spark: Any) -> dict[str, Any]:
    """What the live session actually runs on, read from the driver JVM (not from env vars).

    Env vars say what was asked for; a report must say what Spark resolved (``local[*]`` to a
    core count, the default heap, the catalog it chose). Executors come from Spark's status
    store, the data behind the UI's Executors tab, so this works with the UI disabled and in
    local mode, where the driver is the single executor. On a cluster, executors that have not
    registered yet are not listed.
    """
    sc = spark.sparkContext
    jvm = sc._jvm
    conf = sc.getConf()
    system = jvm.System
    master = sc.master
    catalog = spark.conf.get("spark.sql.catalogImplementation")
    metastore, metastore_location = _metastore(spark, catalog, system.getProperty("user.dir"))
    executors = _executors(sc)
    import pyspark

    pyspark_path = str(Path(pyspark.__file__).parent)
    return {
        "host": conf.get("spark.driver.host", None) or platform.node(),
        "spark_version": spark.version,
        "spark_home": system.getenv("SPARK_HOME") or pyspark_path,
        "pyspark_path": pyspark_path,
        "master": master,
        "deploy_mode": conf.get("spark.submit.deployMode", "client"),
        "app_id": sc.applicationId,
        "app_name": sc.appName,
        "user": sc.sparkUser(),
        "default_parallelism": sc.defaultParallelism,
        "shuffle_partitions": int(spark.conf.get("spark.sql.shuffle.partitions")),
        "executor_count": len(executors),
        "total_cores": sum(e["cores"] or 0 for e in executors),
        "executors": executors,
        "driver_memory": conf.get("spark.driver.memory", SPARK_DEFAULT_DRIVER_MEMORY),
        "driver_max_heap_bytes": int(jvm.java.lang.Runtime.getRuntime().maxMemory()),
        "java_version": system.getProperty("java.version"),
        "java_vendor": system.getProperty("java.vendor"),
        "java_home": system.getProperty("java.home"),
        "catalog_implementation": catalog,
        "warehouse_dir": spark.conf.get("spark.sql.warehouse.dir"),
        "metastore": metastore,
        "metastore_location": metastore_location,
        "session_time_zone": spark.conf.get("spark.sql.session.timeZone"),
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
    }


def _executors(sc: Any) -> list[dict[str, Any]]:
    """One entry per live executor (``driver`` in local mode) with its cores and memory."""
    conf = sc.getConf()
    driver_memory = conf.get("spark.driver.memory", SPARK_DEFAULT_DRIVER_MEMORY)
    executor_memory = conf.get("spark.executor.memory", SPARK_DEFAULT_DRIVER_MEMORY)
    jsc = sc._jsc.sc()
    try:
        # AppStatusStore is private[spark] in Scala but public in bytecode; it is what the UI
        # and REST API read, and it knows each executor's cores.
        summaries = sc._jvm.scala.jdk.javaapi.CollectionConverters.asJava(
            jsc.statusStore().executorList(True)
        )
        return [
            {
                "id": s.id(),
                "host_port": s.hostPort(),
                "cores": int(s.totalCores()),
                "memory": driver_memory if s.id() == "driver" else executor_memory,
                "storage_memory_bytes": int(s.maxMemory()),
            }
            for s in summaries
        ]
    except Exception:  # an internal API moved: fall back to the public memory status
        cores = local_cores(sc.master)
        per_executor = cores if cores is not None else int(conf.get("spark.executor.cores", "1"))
        status = jsc.getExecutorMemoryStatus()
        it = status.iterator()
        executors = []
        while it.hasNext():
            entry = it.next()
            executors.append(
                {
                    "id": "driver" if cores is not None else None,
                    "host_port": entry._1(),
                    "cores": per_executor,
                    "memory": driver_memory if cores is not None else executor_memory,
                    "storage_memory_bytes": int(entry._2()._1()),
                }
            )
        return executors


def _metastore(spark: Any, catalog: str, working_dir: str) -> tuple[str, str | None]:
    """Where table metadata lives: a remote Hive metastore, a JDBC database, Derby, or RAM."""
    if catalog != "hive":
        return "in-memory (table definitions last as long as the session)", None
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()

    def setting(key: str) -> str | None:
        value = spark.conf.get(f"spark.hadoop.{key}", None) or hadoop.get(key)
        return value or None

    uris = spark.conf.get("spark.sql.hive.metastore.uris", None) or setting("hive.metastore.uris")
    if uris:
        return "remote Hive metastore (thrift)", uris
    url = setting("javax.jdo.option.ConnectionURL")
    if url and not url.startswith("jdbc:derby:"):
        return "Hive metastore in a JDBC database", url
    # Hive's default: an embedded Derby database created in the driver's working directory.
    name = re.search(r"databaseName=([^;]+)", url or "")
    database = Path(name.group(1) if name else "metastore_db")
    return "embedded Derby (Hive default)", str(Path(working_dir) / database)
