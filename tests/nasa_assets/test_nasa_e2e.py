"""End to end: search -> warehouse table -> Spark downloads into the object store (local folder,
S3 served by moto over HTTP, and a live-mode NASA stand-in on a local HTTP server)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib

import boto3
import dagster as dg
import duckdb
import pytest
from dagster_pyspark import LazyPySparkResource
from werkzeug import Request, Response

from definitions import build_resources
from nasa_assets.assets import NASA_ASSETS
from nasa_assets.checks import NASA_CHECKS
from nasa_assets.client import NasaImagesResource
from nasa_assets.keys import safe_key_component
from nasa_assets.simulator import png_bytes
from resources.settings import load_settings
from resources.source import SourceConfig
from tests.hardening.network_audit import step_intervals
from tests.weather_assets.conftest import shared_spark_session

MOON_DISTINCT = 238  # the simulator's 240 "moon" hits minus 2 repeats across pages
SEARCH = ["nasa_search_results", "nasa_image_search"]  # the API call, then the warehouse write


@pytest.fixture(scope="module")
def spark():
    return shared_spark_session()


def _resources(spark, **overrides):
    resources = build_resources(load_settings())
    # getOrCreate hands the assets the test session (local[1]) already running.
    resources["pyspark"] = LazyPySparkResource(spark_config={"spark.master": "local[1]"})
    resources.update(overrides)
    return resources


def _materialize(resources, instance, query="moon", *, selection=None, run_config=None):
    if query not in instance.get_dynamic_partitions("nasa_queries"):
        instance.add_dynamic_partitions("nasa_queries", [query])
    return dg.materialize(
        [*NASA_ASSETS, *NASA_CHECKS],
        selection=selection,
        partition_key=query,
        resources=resources,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def _meta(result, node):
    event = result.asset_materializations_for_node(node)[-1]
    return {k: v.value for k, v in event.metadata.items()}


def _checks(result):
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert zlib.crc32(data[12:29]) == int.from_bytes(data[29:33], "big")  # IHDR CRC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_moon_into_s3_over_http_twice(spark, platform_env, instance, moto_server, s3_bucket,
                                      monkeypatch):  # fmt: skip
    """The brief's run: every moon image and its metadata land in the bucket; the second run
    finds them all and downloads nothing (the objects are not rewritten)."""
    monkeypatch.setenv("S3_BUCKET", s3_bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("S3_PREFIX", "team/ml")
    resources = _resources(spark)
    s3 = boto3.client("s3", endpoint_url=moto_server)

    first = _materialize(resources, instance)
    assert first.success
    search, images = _meta(first, "nasa_search_results"), _meta(first, "nasa_images")
    assert search["dagster/row_count"] == MOON_DISTINCT and search["duplicates_dropped"] == 2
    assert search["total_hits"] == 240 and search["search_ended"] == "last page"
    assert search["location"] == f"s3://{s3_bucket}/team/ml/nasa/moon/search_results.parquet"
    assert _meta(first, "nasa_image_search")["dagster/row_count"] == MOON_DISTINCT
    assert images["downloaded"] == MOON_DISTINCT
    assert images["skipped"] == 0 and images["failed"] == 0
    assert images["location"] == f"s3://{s3_bucket}/team/ml/nasa/moon"
    assert _checks(first) == {"nasa_search_ids_unique": True, "nasa_images_stored": True}

    listed = {
        o["Key"]: o
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    }
    image_keys = [k for k in listed if k.startswith("team/ml/nasa/moon/images/")]
    meta_keys = [k for k in listed if k.startswith("team/ml/nasa/moon/metadata/")]
    assert len(image_keys) == len(meta_keys) == MOON_DISTINCT
    assert sum(listed[k]["Size"] for k in image_keys) == images["bytes"]
    # Ids with a space or a tilde became safe keys; nothing escaped the query's folder.
    assert all("/" not in k.rsplit("/images/", 1)[1] and " " not in k for k in image_keys)

    some = sorted(meta_keys)[0]
    document = json.loads(s3.get_object(Bucket=s3_bucket, Key=some)["Body"].read())
    image = s3.get_object(Bucket=s3_bucket, Key=document["image_key"])
    data = image["Body"].read()
    assert image["ContentType"] == "image/png"
    assert document["query"] == "moon" and document["bytes"] == len(data)
    assert _png_size(data) in {(640, 480), (320, 240)}  # large, or medium where large is absent
    assert some.endswith(f"/{safe_key_component(document['nasa_id'])}.json")

    second = _materialize(resources, instance)
    assert second.success
    again = _meta(second, "nasa_images")
    assert again["downloaded"] == 0 and again["skipped"] == MOON_DISTINCT
    assert again["spark_tasks"] == 0
    relisted = {
        o["Key"]: o["LastModified"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    }
    assert all(relisted[k] == listed[k]["LastModified"] for k in image_keys + meta_keys)
    with duckdb.connect(str(load_settings().warehouse_path), read_only=True) as conn:
        assert conn.execute("select count(*) from nasa.nasa_image_search").fetchone()[0] == (
            MOON_DISTINCT
        )


def test_sampling_factor_comes_from_the_environment_unless_configured(
    platform_env, instance, monkeypatch
):
    """SEARCH_RESULT_SAMPLING_FACTOR keeps about one in N; run config overrides it; re-running
    the partition replaces its rows rather than adding to them."""
    monkeypatch.setenv("SEARCH_RESULT_SAMPLING_FACTOR", "4")
    resources = build_resources(load_settings())
    sampled = _materialize(resources, instance, selection=SEARCH)
    assert sampled.success
    rows = _meta(sampled, "nasa_image_search")["dagster/row_count"]
    assert _meta(sampled, "nasa_search_results")["sampling_factor"] == 4
    assert MOON_DISTINCT / 4 * 0.6 < rows < MOON_DISTINCT / 4 * 1.4

    full = _materialize(
        resources,
        instance,
        selection=SEARCH,
        run_config={"ops": {"nasa_search_results": {"config": {"sampling_factor": 1}}}},
    )
    assert _meta(full, "nasa_image_search")["dagster/row_count"] == MOON_DISTINCT
    # An empty result (a factor that keeps nothing) must not leave the old rows behind.
    emptied = _materialize(
        resources,
        instance,
        selection=SEARCH,
        run_config={"ops": {"nasa_search_results": {"config": {"sampling_factor": 10**12}}}},
    )
    assert emptied.success
    with duckdb.connect(str(load_settings().warehouse_path), read_only=True) as conn:
        count = conn.execute(
            "select count(*) from nasa.nasa_image_search where query = 'moon'"
        ).fetchone()[0]
    assert count == 0


def _serve_library(httpserver, ids, broken):
    """A live-mode stand-in for both NASA hosts: one search page, manifests, images."""
    items = [
        {
            "href": httpserver.url_for(f"/image/{i}/collection.json"),
            "data": [{"nasa_id": i, "title": f"Moon {i}", "media_type": "image"}],
        }
        for i in ids
    ]
    httpserver.expect_request("/search").respond_with_json(
        {"collection": {"items": items, "metadata": {"total_hits": len(ids)}, "links": []}}
    )
    for i in ids:
        href = httpserver.url_for(f"/image/{i}/{i}~large.png")
        httpserver.expect_request(f"/asset/{i}").respond_with_json(
            {"collection": {"items": [{"href": href}]}}
        )
        if i in broken:
            httpserver.expect_request(f"/image/{i}/{i}~large.png").respond_with_data(
                "gone", status=broken[i]
            )
        else:
            httpserver.expect_request(f"/image/{i}/{i}~large.png").respond_with_data(
                png_bytes(32, 24, i), content_type="image/png"
            )


def test_failures_are_recorded_and_fail_the_run_only_above_the_share(
    spark, platform_env, instance, httpserver
):
    """Per-item HTTP failures are listed (metadata + failures.json), fail the asset only above
    max_failure_share, never lose what was stored, and a re-run retries only them."""
    ids = [f"LIVE{i:03d}" for i in range(10)]
    _serve_library(httpserver, ids, broken={"LIVE003": 404, "LIVE007": 500})
    library = NasaImagesResource(
        source=SourceConfig(mode="live"),
        base_url=httpserver.url_for("").rstrip("/"),
        max_attempts=2,
    )
    resources = _resources(spark, nasa_library=library)
    store = resources["object_store"]

    tolerant = _materialize(
        resources,
        instance,
        run_config={"ops": {"nasa_images": {"config": {"max_failure_share": 0.5, "tasks": 2}}}},
    )
    assert tolerant.success
    meta = _meta(tolerant, "nasa_images")
    assert (meta["downloaded"], meta["failed"], meta["spark_tasks"]) == (8, 2, 2)
    assert "LIVE003" in meta["failures"] and "LIVE007" in meta["failures"]
    failures = json.loads(store.get_bytes(store.key("nasa/moon/failures.json")))
    assert sorted(f["nasa_id"] for f in failures) == ["LIVE003", "LIVE007"]
    assert "HTTP 404" in next(f["error"] for f in failures if f["nasa_id"] == "LIVE003")
    assert _checks(tolerant)["nasa_images_stored"] is False  # a warning: two are missing

    strict = _materialize(
        resources, instance, run_config={"ops": {"nasa_images": {"config": {"tasks": 1}}}}
    )
    assert not strict.success  # 2 of 2 attempted failed: above the default 10%
    assert len(store.list_keys(store.key("nasa/moon/images/"))) == 8  # nothing stored was lost

    httpserver.clear()
    _serve_library(httpserver, ids, broken={})
    healed = _materialize(resources, instance)
    assert healed.success
    meta = _meta(healed, "nasa_images")
    assert (meta["downloaded"], meta["skipped"], meta["failed"]) == (2, 8, 0)
    assert json.loads(store.get_bytes(store.key("nasa/moon/failures.json"))) == []
    assert _checks(healed)["nasa_images_stored"] is True


def test_bad_configuration_fails_with_a_clear_message(spark, platform_env, instance):
    result = _materialize(
        _resources(spark),
        instance,
        run_config={"ops": {"nasa_images": {"config": {"rendition": "huge"}}}},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "rendition must be one of orig, large, medium, small, thumb" in str(
        failure.step_failure_data.error
    )


@pytest.mark.parametrize(("key", "normal"), [("moon ", "moon"), ("apollo  11", "apollo 11")])
def test_a_partition_key_not_in_normal_form_fails_and_writes_nothing(
    platform_env, instance, key, normal
):
    """A key added from the UI as ``"moon "`` would search ``moon`` and append a copy of its
    rows on every run (the IO manager deletes ``query = 'moon '``, inserts ``'moon'``)."""
    result = _materialize(build_resources(load_settings()), instance, key, selection=SEARCH)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert f"{key!r}" in message and f"normal form {normal!r}" in message
    assert not load_settings().warehouse_path.exists() or _rows() == 0


def _rows() -> int:
    with duckdb.connect(str(load_settings().warehouse_path), read_only=True) as conn:
        return (
            conn.execute(
                "select count(*) from information_schema.tables where table_name = 'nasa_image_search'"
            ).fetchone()[0]
            and conn.execute("select count(*) from nasa.nasa_image_search").fetchone()[0]
        )


def test_nasa_images_reads_the_search_table_read_only(spark, platform_env, instance, monkeypatch):
    """A reader (the web service, a notebook) holding the warehouse open read-only in another
    process does not stop ``nasa_images``: it only reads its input, so it opens it read-only
    too (a read-write open waits for the file lock, then fails)."""
    monkeypatch.setenv("SEARCH_RESULT_SAMPLING_FACTOR", "40")
    resources = _resources(spark)
    upstream = [a.key.to_user_string() for a in NASA_ASSETS if a.key.path != ["nasa_images"]]
    assert _materialize(resources, instance, selection=upstream).success
    path = str(load_settings().warehouse_path)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "reading"
        started = time.perf_counter()
        images = _materialize(resources, instance, selection=["nasa_images"])
        elapsed = time.perf_counter() - started
    finally:
        reader.kill()
        reader.wait()
    assert images.success
    meta = _meta(images, "nasa_images")
    assert 0 < meta["items"] == meta["downloaded"] < MOON_DISTINCT
    assert elapsed < 60


READER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
conn.execute("select count(*) from nasa.nasa_image_search").fetchone()
print("reading", flush=True)
time.sleep(300)
"""


def test_the_search_api_is_called_outside_the_duckdb_pool(platform_env, instance, httpserver):
    """Live mode against a stand-in: every API request falls in ``nasa_search_results``'s step
    (no pool); the step holding the ``duckdb`` slot only writes the staged rows."""
    requests_at: list[float] = []
    items = [{"href": "x", "data": [{"nasa_id": f"LIVE{i}", "title": "Moon"}]} for i in range(5)]
    body = {"collection": {"items": items, "metadata": {"total_hits": 5}, "links": []}}

    def search(request: Request) -> Response:
        requests_at.append(time.time())
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/search").respond_with_handler(search)
    resources = build_resources(load_settings())
    resources["nasa_library"] = NasaImagesResource(
        source=SourceConfig(mode="live"), base_url=httpserver.url_for("").rstrip("/")
    )
    result = _materialize(resources, instance, selection=SEARCH)
    assert result.success
    assert _meta(result, "nasa_image_search")["dagster/row_count"] == 5
    steps = step_intervals(instance, result.run_id)
    assert (steps["nasa_search_results"][0], steps["nasa_image_search"][0]) == (None, "duckdb")
    _, start, end = steps["nasa_search_results"]
    assert requests_at and all(start <= t <= end for t in requests_at)
    _, start, end = steps["nasa_image_search"]
    assert not [t for t in requests_at if start <= t <= end]
