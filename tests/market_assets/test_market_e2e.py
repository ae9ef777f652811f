"""End to end: the simulated Kaggle-layout dataset -> prices -> features -> model -> /predict."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_pyspark import LazyPySparkResource
from fastapi.testclient import TestClient

from market_assets.assets import MARKET_ASSETS, scan_dataset
from market_assets.checks import MARKET_CHECKS
from market_assets.model_store import read_pointer
from market_assets.simulator import SMALL, ensure_stock_dataset


@pytest.fixture
def resources(platform_resources, spark):
    return {
        **platform_resources,
        # getOrCreate hands the assets the test session (local[1]) already running.
        "pyspark": LazyPySparkResource(spark_config={"spark.master": "local[1]"}),
    }


def materialize(resources, instance, selection, **kwargs):
    result = dg.materialize(
        [*MARKET_ASSETS, *MARKET_CHECKS],
        selection=selection,
        resources=resources,
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )
    assert result.success
    return result


def snapshot(store, name: str) -> pl.DataFrame:
    return scan_dataset(store, name).collect().sort("Symbol", "Date")


def test_market_group_end_to_end(resources, instance, platform_env, monkeypatch):
    store = resources["object_store"]
    dataset = resources["stock_dataset"]
    config = {"ops": {"volume_model": {"config": {"reference_train_rows": 3_000}}}}
    result = materialize(resources, instance, MARKET_ASSETS, run_config=config)

    # The ingestion keeps exactly the generator's clean rows and accounts for all its junk.
    manifest = ensure_stock_dataset(Path(dataset.generated_dir) / "small", SMALL)
    meta = result.asset_materializations_for_node("stock_prices")[0].metadata
    assert meta["source"].value == "simulated"
    assert meta["dagster/row_count"].value == manifest.rows
    assert meta["quarantined_lines"].value == manifest.malformed_rows
    assert meta["missing_files_count"].value == len(manifest.missing_files)
    assert meta["empty_files_count"].value == len(manifest.empty_files)
    prices = snapshot(store, "stock_prices")
    assert prices.height == manifest.rows
    assert prices.schema["Volume"] == pl.Int64 and prices.schema["Date"] == pl.Date

    features = snapshot(store, "stock_features")
    assert features.height == manifest.rows
    lengths = features.group_by("Symbol").len()["len"]
    assert features["vol_moving_avg"].null_count() == lengths.clip(upper_bound=29).sum()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "stock_prices_unique_days": True,
        "stock_prices_values_valid": True,
        "stock_features_windows_complete": True,
        "volume_model_meets_target": True,
    }

    model_meta = result.asset_materializations_for_node("volume_model")[0].metadata
    pointer = read_pointer(store)
    assert pointer["version"] == model_meta["model_version"].value
    assert pointer["model_bytes"] < 50 * 1024 * 1024
    assert store.get_bytes(pointer["log_key"]).decode().startswith("Volume model from")

    # The web service, on the same object store, answers from that model.
    monkeypatch.setenv("MODEL_RELOAD_SECONDS", "0")
    from serving.app import create_app

    with TestClient(create_app()) as client:
        health = client.get("/health").json()
        assert health["model_version"] == pointer["version"]
        answer = client.get(
            "/predict", params={"vol_moving_avg": 25_000, "adj_close_rolling_med": 40}
        )
        assert answer.status_code == 200
        assert isinstance(answer.json(), int) and answer.json() >= 0

    # Re-running the Spark stages gives the same data, once.
    materialize(resources, instance, MARKET_ASSETS[:2])
    assert snapshot(store, "stock_prices").equals(prices)
    assert snapshot(store, "stock_features").equals(features)
