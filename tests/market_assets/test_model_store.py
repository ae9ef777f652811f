"""Publishing volume-model versions: layout, pointer last, pruning, integrity, S3, and loading
that runs no code from the store (skops with an allow-list, keys inside the versions prefix)."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression

from market_assets import model_store
from market_assets.model import (
    MovingAverageRatioRegressor,
    MovingAverageRegressor,
    _hist_gbm,
)
from market_assets.model_store import ModelRefused, load_model, publish_model, read_pointer
from resources.object_store import ObjectStore


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    return ObjectStore(prefix="p", local_dir=str(tmp_path / "objects"))


def versions_in(store: ObjectStore) -> list[str]:
    prefix = model_store.versions_prefix(store)
    return sorted({k[len(prefix) :].split("/")[0] for k in store.list_keys(prefix)})


def tiny_model() -> LinearRegression:
    X = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 2.0]])
    return LinearRegression().fit(X, X @ [3.0, 1.0] + 10)


def test_publish_then_load_round_trip(store):
    model = tiny_model()
    assert read_pointer(store) is None
    published = publish_model(
        store, model, metrics={"mae": np.float64(12.5), "rows": np.int64(4)}, log_text="fit ok\n"
    )
    assert re.fullmatch(r"\d{8}T\d{12}Z", published.version)
    folder = f"p/market/volume_model/versions/{published.version}"
    assert published.model_key == f"{folder}/model.skops"
    assert store.get_bytes(published.log_key) == b"fit ok\n"
    assert json.loads(store.get_bytes(published.metrics_key)) == {"mae": 12.5, "rows": 4}

    pointer = read_pointer(store)
    assert pointer["version"] == published.version
    assert pointer["sha256"] == published.sha256
    assert pointer["model_bytes"] == published.model_bytes
    assert pointer["published_at"] == published.published_at
    assert pointer["metrics"] == {"mae": 12.5, "rows": 4}
    loaded = load_model(store, pointer)
    assert loaded.predict([[2.0, 3.0]])[0] == pytest.approx(19.0)


def test_the_pointer_is_written_last(store, monkeypatch):
    written: list[str] = []
    put = ObjectStore.put_bytes

    def recording_put(self, key, data, content_type=None):
        written.append(key)
        return put(self, key, data, content_type)

    monkeypatch.setattr(ObjectStore, "put_bytes", recording_put)
    published = publish_model(store, tiny_model(), metrics={}, log_text="")
    assert written[-1] == "p/market/volume_model/current.json"
    assert set(written[:-1]) == {published.model_key, published.metrics_key, published.log_key}


def test_old_versions_are_pruned(store):
    published = [publish_model(store, {"n": i}, metrics={}, log_text="", keep=2) for i in range(4)]
    assert versions_in(store) == [published[2].version, published[3].version]
    assert read_pointer(store)["version"] == published[3].version
    assert load_model(store, read_pointer(store)) == {"n": 3}


def test_the_current_version_is_never_pruned(store, monkeypatch):
    # A clock that went backwards: the newly published version sorts before the older ones.
    names = iter(["20300101T000000000000Z", "20300102T000000000000Z", "20200101T000000000000Z"])
    monkeypatch.setattr(model_store, "_new_version", lambda now: next(names))
    for i in range(3):
        publish_model(store, {"n": i}, metrics={}, log_text="", keep=1)
    assert versions_in(store) == ["20200101T000000000000Z", "20300102T000000000000Z"]
    assert read_pointer(store)["version"] == "20200101T000000000000Z"


def test_versions_sort_in_publishing_order(store):
    versions = [
        publish_model(store, {}, metrics={}, log_text="", keep=10).version for _ in range(3)
    ]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_a_tampered_model_is_refused(store):
    published = publish_model(store, tiny_model(), metrics={}, log_text="")
    store.put_bytes(published.model_key, b"not the model")
    with pytest.raises(ValueError, match=re.escape(published.model_key) + ".*sha256"):
        load_model(store, read_pointer(store))


def test_a_broken_pointer_says_which_key(store):
    store.put_bytes("p/market/volume_model/current.json", b"{not json")
    with pytest.raises(ValueError, match=r"current\.json is not valid JSON"):
        read_pointer(store)
    store.put_bytes("p/market/volume_model/current.json", b'{"version": "x"}')
    with pytest.raises(ValueError, match="lacks model_key, sha256"):
        read_pointer(store)


def test_keep_must_leave_the_current_version(store):
    with pytest.raises(ValueError, match="keep must be >= 1"):
        publish_model(store, {}, metrics={}, log_text="", keep=0)


def test_metrics_must_be_json(store):
    with pytest.raises(TypeError, match="not JSON serialisable"):
        publish_model(store, {}, metrics={"model": object()}, log_text="")
    assert read_pointer(store) is None


@pytest.mark.integration
def test_publish_prune_and_load_through_s3(moto_server, s3_bucket):
    store = ObjectStore(bucket=s3_bucket, prefix="p", endpoint_url=moto_server)
    assert read_pointer(store) is None
    serial = count()
    for _ in range(3):
        published = publish_model(
            store, tiny_model(), metrics={"n": next(serial)}, log_text="s3", keep=2
        )
    assert len(versions_in(store)) == 2
    pointer = read_pointer(store)
    assert pointer["version"] == published.version and pointer["metrics"] == {"n": 2}
    assert store.uri(pointer["model_key"]).startswith(f"s3://{s3_bucket}/p/market/volume_model/")
    assert load_model(store, pointer).predict([[2.0, 3.0]])[0] == pytest.approx(19.0)


# --- loading runs no code from the store -------------------------------------------------------


class _TouchOnUnpickle:
    """A pickle payload that creates ``marker`` when unpickled (stands in for any code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class _TouchOnSetstate:
    """An object whose ``__setstate__`` creates a file: what skops must refuse to construct."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        self.__dict__.update(state)


def _point_at(store: ObjectStore, key: str, payload: bytes, **extra) -> dict:
    """Plant ``payload`` at ``key`` and a pointer to it with the right sha256 (an attacker who
    can write the bucket can do both)."""
    version = "20990101T000000000000Z"
    store.put_bytes(key, payload)
    pointer = {
        "version": version,
        "model_key": key,
        "sha256": hashlib.sha256(payload).hexdigest(),
        **extra,
    }
    store.put_bytes(model_store.pointer_key(store), json.dumps(pointer).encode())
    return read_pointer(store)


@pytest.mark.parametrize("name", ["model.pkl", "model.skops"])
def test_a_malicious_pickle_at_the_pointer_is_never_executed(store, tmp_path, name):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_TouchOnUnpickle(marker))
    key = f"{model_store.versions_prefix(store)}20990101T000000000000Z/{name}"
    pointer = _point_at(store, key, payload, library_versions=model_store.library_versions())
    with pytest.raises(ModelRefused):
        load_model(store, pointer)
    assert not marker.exists()


def test_a_skops_file_with_an_untrusted_type_is_refused_before_construction(store, tmp_path):
    from skops import io as sio

    marker = tmp_path / "pwned"
    payload = sio.dumps({"model": _TouchOnSetstate(str(marker))})
    key = f"{model_store.versions_prefix(store)}20990101T000000000000Z/model.skops"
    pointer = _point_at(store, key, payload, library_versions=model_store.library_versions())
    with pytest.raises(ModelRefused, match="_TouchOnSetstate") as refused:
        load_model(store, pointer)
    assert "untrusted" in refused.value.reason
    assert not marker.exists()


def test_publishing_a_model_the_service_would_refuse_fails_before_writing(store, tmp_path):
    with pytest.raises(ValueError, match="_TouchOnSetstate"):
        publish_model(store, _TouchOnSetstate(str(tmp_path / "x")), metrics={}, log_text="")
    assert read_pointer(store) is None and versions_in(store) == []


@pytest.mark.parametrize(
    "key",
    [
        "p/market/volume_model/versions/../../../secrets/model.skops",
        "p/market/volume_model/versions/20990101T000000000000Z/../../current.json",
        "../x",
        "/etc/passwd",
        "p/market/other_model/versions/20990101T000000000000Z/model.skops",
        "p/market/volume_model/versions/20990101T000000000000Z/model.pkl",
        "p/market/volume_model/versions/20200101T000000000000Z/model.skops",  # not its version
    ],
)
def test_a_model_key_outside_the_versions_prefix_is_refused(store, key, monkeypatch):
    fetched: list[str] = []
    monkeypatch.setattr(ObjectStore, "get_bytes", lambda self, k: fetched.append(k) or b"")
    pointer = {"version": "20990101T000000000000Z", "model_key": key, "sha256": "0" * 64}
    with pytest.raises(ModelRefused, match=re.escape(repr(key))) as refused:
        load_model(store, {**pointer, "library_versions": model_store.library_versions()})
    assert "p/market/volume_model/versions/" in str(refused.value)
    assert fetched == []  # refused before anything was read


def test_library_versions_are_recorded_and_a_scikit_learn_mismatch_is_refused(store, caplog):
    import numpy
    import sklearn

    publish_model(store, tiny_model(), metrics={}, log_text="")
    pointer = read_pointer(store)
    recorded = pointer["library_versions"]
    assert recorded["scikit-learn"] == sklearn.__version__
    assert recorded["numpy"] == numpy.__version__
    assert {"python", "skops"} <= recorded.keys()

    old = {**pointer, "library_versions": {**recorded, "scikit-learn": "0.24.2"}}
    with pytest.raises(
        ModelRefused, match=r"scikit-learn 0\.24\.2.*" + re.escape(sklearn.__version__)
    ):
        load_model(store, old)

    other_numpy = {**pointer, "library_versions": {**recorded, "numpy": "1.0.0"}}
    with caplog.at_level(logging.WARNING, logger="market_assets.model_store"):
        assert load_model(store, other_numpy).predict([[2.0, 3.0]])[0] == pytest.approx(19.0)
    assert "numpy 1.0.0" in caplog.text and numpy.__version__ in caplog.text

    unrecorded = {k: v for k, v in pointer.items() if k != "library_versions"}
    with pytest.raises(ModelRefused, match="library versions"):
        load_model(store, unrecorded)


def _volume_models():
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.lognormal(10, 2, 800), rng.lognormal(3, 1, 800)])
    y = X[:, 0] * rng.lognormal(0, 0.3, 800)
    return X, [
        HistGradientBoostingRegressor(max_iter=15, random_state=0).fit(X, y),
        MovingAverageRatioRegressor(_hist_gbm("absolute_error").set_params(max_iter=10)).fit(X, y),
        MovingAverageRegressor().fit(X, y),
        RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0).fit(X, y),
    ]


def test_round_trip_predictions_equal_the_in_memory_models(store):
    from serving.predictor import make_predictor

    X, models = _volume_models()
    for model in models:
        publish_model(store, model, metrics={}, log_text="")
        loaded = load_model(store, read_pointer(store))
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        fast, reference = make_predictor(loaded), make_predictor(model)
        assert fast.kind == reference.kind
        assert [fast.predict_one(r) for r in X[:50].tolist()] == [
            reference.predict_one(r) for r in X[:50].tolist()
        ]
