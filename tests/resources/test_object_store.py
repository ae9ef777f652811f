"""The object store on disk and on S3 (moto's server mode over HTTP), and the pickle IO manager."""

from __future__ import annotations

import dagster as dg
import pytest

from resources.object_store import ObjectStore, object_io_manager_from
from resources.settings import load_settings


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return ObjectStore(prefix="p", local_dir=str(tmp_path / "objects"))
    moto_server = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    return ObjectStore(bucket=bucket, prefix="p", endpoint_url=moto_server)


def test_put_get_list_delete(store):
    a = store.put_bytes(store.key("raw", "2026-11-22", "a.json"), b"A")
    store.put_bytes(store.key("raw", "2026-11-23", "b.json"), b"B")
    store.put_bytes(store.key("rawer", "c.json"), b"C")
    assert a.endswith("p/raw/2026-11-22/a.json")
    assert store.get_bytes("p/raw/2026-11-22/a.json") == b"A"
    assert store.exists("p/raw/2026-11-22/a.json")
    assert not store.exists("p/raw/2026-11-22/a.jso")
    assert store.list_keys("p/raw/") == ["p/raw/2026-11-22/a.json", "p/raw/2026-11-23/b.json"]
    assert store.delete(["p/raw/2026-11-22/a.json"]) == 1
    assert store.list_keys("p/raw/") == ["p/raw/2026-11-23/b.json"]
    store.put_bytes("p/raw/2026-11-23/b.json", b"B2")
    assert store.get_bytes("p/raw/2026-11-23/b.json") == b"B2"


def test_local_keys_cannot_escape_the_root(tmp_path):
    store = ObjectStore(local_dir=str(tmp_path / "objects"))
    with pytest.raises(ValueError, match="escapes"):
        store.put_bytes("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_local_list_of_a_missing_prefix_is_empty(tmp_path):
    assert ObjectStore(local_dir=str(tmp_path / "none")).list_keys("p/raw/") == []


@dg.asset(io_manager_key="object_io_manager")
def tiny_model() -> dict:
    return {"weights": [1, 2, 3]}


@dg.asset(io_manager_key="object_io_manager")
def uses_model(tiny_model: dict) -> int:
    return sum(tiny_model["weights"])


def test_pickle_io_manager_on_disk(platform_env, instance):
    settings = load_settings()
    io = object_io_manager_from(settings)
    result = dg.materialize(
        [tiny_model, uses_model], resources={"object_io_manager": io}, instance=instance
    )
    assert result.output_for_node("uses_model") == 6
    assert (settings.objects_dir / "dagster" / "tiny_model").is_file()


@pytest.mark.integration
def test_pickle_io_manager_on_s3(platform_env, instance, moto_server, s3_bucket):
    import boto3

    settings = load_settings().model_copy(
        update={"s3_bucket": s3_bucket, "s3_prefix": "models", "s3_endpoint_url": moto_server}
    )
    io = object_io_manager_from(settings)
    result = dg.materialize(
        [tiny_model, uses_model], resources={"object_io_manager": io}, instance=instance
    )
    assert result.output_for_node("uses_model") == 6
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=moto_server)
        .list_objects_v2(Bucket=s3_bucket)
        .get("Contents", [])
    ]
    assert "models/tiny_model" in keys


def test_polars_reads_a_parquet_dataset_from_either_backend(store):
    """The market stages are read by polars (checks, model training) wherever they are."""
    import io

    import polars as pl

    from market_assets.assets import scan_dataset

    for part, values in (("part-0.parquet", [1, 2]), ("part-1.parquet", [3])):
        buffer = io.BytesIO()
        pl.DataFrame({"x": values}).write_parquet(buffer)
        store.put_bytes(store.key("market", "stage", part), buffer.getvalue())
    store.put_bytes(store.key("market", "stage", "_SUCCESS"), b"")
    got = scan_dataset(store, "stage").collect()
    assert sorted(got["x"].to_list()) == [1, 2, 3]
