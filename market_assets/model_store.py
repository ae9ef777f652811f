"""Versions of the volume model in the object store, and the pointer the web service follows.

Layout under the store's prefix::

    market/volume_model/versions/{version}/model.pkl     pickled estimator
    market/volume_model/versions/{version}/metrics.json  what training measured
    market/volume_model/versions/{version}/training.log  the training run's log
    market/volume_model/current.json                     pointer to the version being served

The pointer is written last, after every object of its version, so a reader that follows it
never finds a half-published model. Plain Python (no Dagster), shared by the asset and the API.
Pickles are only ever read from this store, which the platform alone writes: unpickling runs
code, so never point the store at objects someone else can write.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from resources import clock

if TYPE_CHECKING:
    from resources.object_store import ObjectStore

MODEL_PREFIX = "market/volume_model"
VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
POINTER_FIELDS = ("version", "model_key", "sha256")


@dataclass(frozen=True)
class PublishedModel:
    version: str
    model_key: str
    metrics_key: str
    log_key: str
    model_bytes: int
    sha256: str
    published_at: str


def pointer_key(store: ObjectStore) -> str:
    return store.key(MODEL_PREFIX, "current.json")


def versions_prefix(store: ObjectStore) -> str:
    return store.key(MODEL_PREFIX, "versions") + "/"


def _new_version(now: datetime) -> str:
    """A UTC timestamp to the microsecond: versions sort by name in publishing order."""
    return now.strftime(VERSION_FORMAT)


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays (typical in metrics) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"metrics value {value!r} ({type(value).__name__}) is not JSON serialisable")


def publish_model(
    store: ObjectStore, estimator: Any, *, metrics: dict, log_text: str, keep: int = 5
) -> PublishedModel:
    """Write a new version, then point ``current.json`` at it, then prune old versions."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the current version is always kept), got {keep}")
    now = clock.utcnow()
    version = _new_version(now)
    published_at = now.isoformat().replace("+00:00", "Z")
    payload = pickle.dumps(estimator, protocol=5)
    digest = hashlib.sha256(payload).hexdigest()
    metrics_json = json.dumps(metrics, indent=2, sort_keys=True, default=_jsonable)
    folder = (MODEL_PREFIX, "versions", version)
    published = PublishedModel(
        version=version,
        model_key=store.key(*folder, "model.pkl"),
        metrics_key=store.key(*folder, "metrics.json"),
        log_key=store.key(*folder, "training.log"),
        model_bytes=len(payload),
        sha256=digest,
        published_at=published_at,
    )
    store.put_bytes(published.model_key, payload, "application/octet-stream")
    store.put_bytes(published.metrics_key, metrics_json.encode(), "application/json")
    store.put_bytes(published.log_key, log_text.encode(), "text/plain; charset=utf-8")
    pointer = {
        "version": version,
        "model_key": published.model_key,
        "metrics_key": published.metrics_key,
        "log_key": published.log_key,
        "model_bytes": published.model_bytes,
        "sha256": digest,
        "published_at": published_at,
        "metrics": json.loads(metrics_json),
    }
    store.put_bytes(pointer_key(store), json.dumps(pointer, indent=2).encode(), "application/json")
    prune_versions(store, keep=keep, current=version)
    return published


def prune_versions(store: ObjectStore, *, keep: int, current: str) -> list[str]:
    """Delete every version but the newest ``keep`` and ``current``; the deleted versions."""
    prefix = versions_prefix(store)
    by_version: dict[str, list[str]] = {}
    for key in store.list_keys(prefix):
        by_version.setdefault(key[len(prefix) :].split("/", 1)[0], []).append(key)
    newest = set(sorted(by_version, reverse=True)[:keep]) | {current}
    doomed = sorted(v for v in by_version if v not in newest)
    store.delete([key for v in doomed for key in by_version[v]])
    return doomed


def _is_missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError
    return isinstance(response, dict) and response.get("Error", {}).get("Code") in (
        "NoSuchKey",
        "404",
    )


def read_pointer(store: ObjectStore) -> dict | None:
    """The current pointer, or None when nothing has been published (one GET, no listing)."""
    key = pointer_key(store)
    try:
        raw = store.get_bytes(key)
    except Exception as exc:
        if _is_missing(exc):
            return None
        raise
    try:
        pointer = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"model pointer {key} is not valid JSON: {exc}") from None
    missing = [f for f in POINTER_FIELDS if not isinstance(pointer, dict) or f not in pointer]
    if missing:
        raise ValueError(f"model pointer {key} lacks {', '.join(missing)}")
    return pointer


def load_model(store: ObjectStore, pointer: dict) -> Any:
    """Fetch the pointer's model, check its sha256 before unpickling anything, unpickle it."""
    key = pointer["model_key"]
    payload = store.get_bytes(key)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != pointer["sha256"]:
        raise ValueError(
            f"model {key} has sha256 {digest}, but the pointer says {pointer['sha256']}: "
            f"refusing to load it"
        )
    return pickle.loads(payload)
