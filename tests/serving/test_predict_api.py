"""``GET /predict`` and ``GET /health`` through FastAPI's TestClient, on a temp object store."""

from __future__ import annotations

import asyncio
import logging
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from market_assets.model import MovingAverageRatioRegressor
from market_assets.model_store import publish_model
from resources.object_store import ObjectStore, object_store_from
from resources.settings import SettingsError, load_settings
from serving.app import app
from serving.model_holder import ModelHolder
from serving.predict_api import MAX_ADJ_CLOSE_ROLLING_MED, MAX_VOL_MOVING_AVG, NO_MODEL
from serving.predictor import to_volume

QUERY = {"vol_moving_avg": 25_000.0, "adj_close_rolling_med": 31.5}


@pytest.fixture(autouse=True, scope="module")
def one_openmp_thread():
    """Fit and predict on one OpenMP thread: on a busy shared machine, OpenMP's spinning
    threads make tiny fits 10x slower."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def fit(scale: float) -> HistGradientBoostingRegressor:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(10, 1, 400), rng.lognormal(3, 1, 400)])
    y = scale * X[:, 0] * (1 + 0.2 * np.log(X[:, 1]))
    return HistGradientBoostingRegressor(loss="absolute_error", max_iter=20).fit(X, y)


@pytest.fixture(scope="module")
def models() -> tuple[HistGradientBoostingRegressor, HistGradientBoostingRegressor]:
    return fit(1.0), fit(3.0)


def expected(model, query=QUERY) -> int:
    return to_volume(model.predict([[query["vol_moving_avg"], query["adj_close_rolling_med"]]])[0])


@pytest.fixture
def store(tmp_path, monkeypatch) -> ObjectStore:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    for name in ("S3_BUCKET", "S3_PREFIX", "S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_RELOAD_SECONDS", "0")
    return object_store_from(load_settings())


@pytest.fixture
def client(store):
    with TestClient(app) as client:
        yield client


def publish(store, model) -> str:
    return publish_model(store, model, metrics={}, log_text="").version


def test_503_until_a_model_is_published(client):
    response = client.get("/predict", params=QUERY)
    assert response.status_code == 503
    assert response.json() == {"detail": NO_MODEL}
    health = client.get("/health").json()
    assert health["status"] == "no_model" and health["model_version"] is None


def test_predicts_the_rounded_volume(store, models):
    version = publish(store, models[0])
    with TestClient(app) as client:
        response = client.get("/predict", params=QUERY)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.text.isdigit()
        assert response.json() == expected(models[0]) > 0
        health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["model_version"] == version
    assert health["predictor"] == "compiled-hgb"
    assert health["source_key"].endswith(f"/versions/{version}/model.skops")
    assert health["published_at"] and health["loaded_at"] and health["last_error"] is None


def test_negative_predictions_are_clipped_to_zero(store):
    publish(store, DummyRegressor(strategy="constant", constant=-5.0).fit([[0, 0]], [-5.0]))
    with TestClient(app) as client:
        assert client.get("/predict", params=QUERY).json() == 0
        assert client.get("/health").json()["predictor"] == "sklearn"


@pytest.mark.parametrize("name", ["vol_moving_avg", "adj_close_rolling_med"])
@pytest.mark.parametrize("value", [None, "abc", "-1", "nan", "inf", "-inf", "1e999", ""])
def test_bad_inputs_are_422_naming_the_parameter(client, store, models, name, value):
    publish(store, models[0])
    params = {k: str(v) for k, v in QUERY.items()}
    if value is None:
        del params[name]
    else:
        params[name] = value
    response = client.get("/predict", params=params)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", name]
    assert error["msg"].startswith(f"query parameter {name}: ")


def test_a_new_version_is_picked_up_without_restart(client, store, models):
    first = publish(store, models[0])
    assert client.get("/predict", params=QUERY).json() == expected(models[0])
    second = publish(store, models[1])
    assert client.get("/predict", params=QUERY).json() == expected(models[1]) != expected(models[0])
    assert client.get("/health").json()["model_version"] == second != first


def test_the_pointer_is_checked_at_most_every_reload_seconds(store, models, monkeypatch):
    monkeypatch.setenv("MODEL_RELOAD_SECONDS", "3600")
    publish(store, models[0])
    with TestClient(app) as client:
        publish(store, models[1])
        assert client.get("/predict", params=QUERY).json() == expected(models[0])


def test_a_corrupt_new_version_keeps_the_old_model(client, store, models, caplog):
    good = publish(store, models[0])
    assert client.get("/predict", params=QUERY).json() == expected(models[0])
    bad = publish_model(store, models[1], metrics={}, log_text="")
    store.put_bytes(bad.model_key, b"truncated")
    for _ in range(2):
        assert client.get("/predict", params=QUERY).json() == expected(models[0])
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["model_version"] == good
    # Public: which version and a generic reason; the key and digests go to the log only.
    assert bad.version in health["last_error"] and "checksum" in health["last_error"]
    assert bad.model_key not in health["last_error"] and "sha256" not in health["last_error"]
    assert f"still serving {good}" in health["last_error"]
    assert bad.model_key in caplog.text and "sha256" in caplog.text

    fixed = publish(store, models[1])
    assert client.get("/predict", params=QUERY).json() == expected(models[1])
    health = client.get("/health").json()
    assert (health["status"], health["model_version"], health["last_error"]) == ("ok", fixed, None)


def test_a_model_that_never_loaded_is_503_with_the_reason_in_health(store, models):
    bad = publish_model(store, models[0], metrics={}, log_text="")
    store.put_bytes(bad.model_key, b"truncated")
    with TestClient(app) as client:
        response = client.get("/predict", params=QUERY)
        assert response.status_code == 503
        assert "could not be loaded" in response.json()["detail"]
        health = client.get("/health").json()
    assert health["status"] == "no_model" and bad.version in health["last_error"]
    assert bad.model_key not in health["last_error"]


def test_health_shows_no_path_of_a_failed_load_or_pointer_read(client, store, models, caplog):
    """An OSError names the file it failed on: that goes to the log, /health says what failed."""
    bad = publish_model(store, models[0], metrics={}, log_text="")
    model_file = store._path(bad.model_key)
    model_file.unlink()
    model_file.mkdir()  # reading it raises IsADirectoryError naming the full path
    with caplog.at_level(logging.WARNING):
        health = client.get("/health").json()
    assert health["status"] == "no_model"
    assert bad.version in health["last_error"] and "see the server log" in health["last_error"]
    assert str(model_file) not in health["last_error"] and "Errno" not in health["last_error"]
    assert str(model_file) in caplog.text

    pointer = store._path(store.key("market/volume_model/current.json"))
    pointer.unlink()
    pointer.mkdir()
    health = client.get("/health").json()
    assert health["last_error"] == "reading the model pointer failed: see the server log"
    assert str(pointer) in caplog.text


@pytest.mark.parametrize(
    ("name", "value", "bound"),
    [
        ("vol_moving_avg", "1.7976931348623157e308", MAX_VOL_MOVING_AVG),
        ("vol_moving_avg", str(MAX_VOL_MOVING_AVG * 10), MAX_VOL_MOVING_AVG),
        ("adj_close_rolling_med", "1e300", MAX_ADJ_CLOSE_ROLLING_MED),
    ],
)
def test_inputs_beyond_the_plausible_range_are_422(client, store, name, value, bound):
    """The issue's overflow: the ratio model multiplies vol_moving_avg, so 1.8e308 became inf
    and rounding it a 500. Inputs are bounded (a documented cap, far above any stock)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(10, 1, 300), rng.lognormal(3, 1, 300)])
    publish(store, MovingAverageRatioRegressor(fit(1.0)).fit(X, 1.5 * X[:, 0]))
    params = {**{k: str(v) for k, v in QUERY.items()}, name: value}
    response = client.get("/predict", params=params)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", name] and error["type"] == "less_than_equal"
    assert error["ctx"] == {"le": bound}
    assert error["msg"].startswith(f"query parameter {name}: Input should be less than or equal")
    at_cap = {**params, name: str(bound)}
    assert client.get("/predict", params=at_cap).status_code == 200


def test_a_non_finite_prediction_is_a_clear_422_not_a_500(client, store):
    broken = DummyRegressor(strategy="constant", constant=1.0).fit([[0, 0]], [1.0])
    for value in (np.inf, np.nan):
        broken.constant_ = np.array([[value]])
        publish(store, broken)
        response = client.get("/predict", params=QUERY)
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["type"] == "non_finite_prediction" and error["loc"] == ["query"]
        assert "not a finite number" in error["msg"]
        assert error["input"] == QUERY


def test_openapi_documents_the_answers(client):
    responses = client.get("/openapi.json").json()["paths"]["/predict"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["type"] == "integer"
    assert {"422", "503"} <= responses.keys()


def test_reload_seconds_setting(monkeypatch):
    monkeypatch.delenv("MODEL_RELOAD_SECONDS", raising=False)
    assert load_settings().model_reload_seconds == 5
    monkeypatch.setenv("MODEL_RELOAD_SECONDS", "0.5")
    assert load_settings().model_reload_seconds == 0.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("MODEL_RELOAD_SECONDS", bad)
        with pytest.raises(SettingsError, match="MODEL_RELOAD_SECONDS"):
            load_settings()


def test_only_one_request_waits_for_a_check(tmp_path):
    """While one request reads the pointer (slow store), others go straight on."""
    release = threading.Event()

    class SlowStore(ObjectStore):
        def get_bytes(self, key: str) -> bytes:
            release.wait(5)
            return super().get_bytes(key)

    holder = ModelHolder(SlowStore(local_dir=str(tmp_path)), reload_seconds=0)

    async def scenario():
        first = asyncio.create_task(holder.refresh_if_due())
        await asyncio.sleep(0.05)
        assert not holder.check_due()
        await asyncio.wait_for(holder.refresh_if_due(), 0.5)  # returns at once
        assert not first.done()
        release.set()
        await first
        assert holder.check_due()

    asyncio.run(scenario())


@pytest.mark.integration
def test_serves_from_s3(store, models, moto_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", s3_bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_server)
    s3 = object_store_from(load_settings())
    with TestClient(app) as client:
        assert client.get("/predict", params=QUERY).status_code == 503
        version = publish(s3, models[0])
        assert client.get("/predict", params=QUERY).json() == expected(models[0])
        health = client.get("/health").json()
    assert health["model_version"] == version and health["last_error"] is None
