"""Publishing volume-model versions: layout, pointer last, pruning, integrity, S3."""

from __future__ import annotations

import json
import re
from itertools import count

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from market_assets import model_store
from market_assets.model_store import load_model, publish_model, read_pointer
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
    assert published.model_key == f"{folder}/model.pkl"
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
