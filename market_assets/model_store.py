"""Versions of the volume model in the object store, and the pointer the web service follows.

Layout under the store's prefix::

    market/volume_model/versions/{version}/model.skops   the estimator, skops format
    market/volume_model/versions/{version}/metrics.json  what training measured
    market/volume_model/versions/{version}/training.log  the training run's log
    market/volume_model/current.json                     pointer to the version being served

The pointer is written last, after every object of its version, so a reader that follows it
never finds a half-published model. Plain Python (no Dagster), shared by the asset and the API.

Why skops and not pickle: whoever can write the bucket can write the pointer and its sha256
too, so the checksum proves integrity, not origin. Loading must therefore run no code: skops
rebuilds only the types it (and ``TRUSTED_TYPES``) allows, arrays without pickle, and the
pointer may only name ``versions/{its version}/model.skops``. The library versions the model
was saved with are recorded in the pointer; a different scikit-learn is refused (the served
predictor reads its tree internals), a different numpy is logged.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from resources import clock

if TYPE_CHECKING:
    from resources.object_store import ObjectStore

log = logging.getLogger(__name__)

MODEL_PREFIX = "market/volume_model"
MODEL_FILE = "model.skops"
VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
VERSION_PATTERN = re.compile(r"\d{8}T\d{12}Z")
POINTER_FIELDS = ("version", "model_key", "sha256")
# Beyond skops's own safe defaults (numpy, scipy, scikit-learn estimators): the types the
# volume model's candidates hold. Each is rebuilt from data by scikit-learn's __setstate__;
# add a type only if constructing it that way runs no code of the file's choosing.
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "market_assets.model.MovingAverageRegressor",
    "market_assets.model.MovingAverageRatioRegressor",
)


class ModelRefused(ValueError):
    """A published model the store will not load; ``reason`` is safe to show publicly
    (no keys, paths or bucket names), the message is for the log."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


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


def library_versions() -> dict[str, str]:
    """The versions a model is saved with (recorded in its pointer, compared at load)."""
    import numpy
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "skops": skops.__version__,
    }


def serialize(estimator: Any) -> bytes:
    """The estimator in skops format; ValueError if loading it would need a type outside the
    allow-list (so a model the web service would refuse is never published)."""
    from skops import io as sio

    payload = sio.dumps(estimator, compression=zipfile.ZIP_DEFLATED)
    untrusted = sorted(set(sio.get_untrusted_types(data=payload)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ValueError(
            f"the model holds types the web service will not load: {untrusted}; add one to "
            "TRUSTED_TYPES in market_assets/model_store.py only if rebuilding it runs no code"
        )
    return payload


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
    payload = serialize(estimator)
    digest = hashlib.sha256(payload).hexdigest()
    metrics_json = json.dumps(metrics, indent=2, sort_keys=True, default=_jsonable)
    folder = (MODEL_PREFIX, "versions", version)
    published = PublishedModel(
        version=version,
        model_key=store.key(*folder, MODEL_FILE),
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
        "format": "skops",
        "library_versions": library_versions(),
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


def check_model_key(store: ObjectStore, pointer: dict) -> str:
    """The pointer's ``model_key`` if it is ``versions/{its version}/model.skops``; anything
    else (another prefix, ``..``, an absolute path, a pickle) is refused before any read."""
    key, version = pointer["model_key"], pointer["version"]
    prefix = versions_prefix(store)
    if (
        isinstance(version, str)
        and VERSION_PATTERN.fullmatch(version)
        and key == f"{prefix}{version}/{MODEL_FILE}"
    ):
        return key
    hint = " (a pickle: it runs code when loaded)" if str(key).endswith(".pkl") else ""
    raise ModelRefused(
        f"model pointer {pointer_key(store)} names model_key {key!r}{hint}, but only "
        f"{prefix}<version>/{MODEL_FILE} of its version {version!r} is loaded: refusing it; "
        "materialize volume_model to publish a model",
        "the pointer names a file outside the model versions",
    )


def check_library_versions(pointer: dict) -> None:
    """Refuse a model saved with another scikit-learn; log one saved with another numpy."""
    recorded = pointer.get("library_versions")
    if not isinstance(recorded, dict):
        raise ModelRefused(
            f"model version {pointer['version']} records no library versions (published before "
            "models were saved as skops): materialize volume_model to publish it again",
            "the model records no library versions",
        )
    installed = library_versions()
    if recorded.get("scikit-learn") != installed["scikit-learn"]:
        message = (
            f"model version {pointer['version']} was saved with scikit-learn "
            f"{recorded.get('scikit-learn')}, this process runs scikit-learn "
            f"{installed['scikit-learn']}"
        )
        raise ModelRefused(
            f"{message}: refusing it; materialize volume_model with this version", message
        )
    if recorded.get("numpy") != installed["numpy"]:
        log.warning(
            "model version %s was saved with numpy %s, this process runs numpy %s; loading it",
            pointer["version"],
            recorded.get("numpy"),
            installed["numpy"],
        )


def load_model(store: ObjectStore, pointer: dict) -> Any:
    """The pointer's model: key and library versions checked before any read, sha256 before
    parsing, then rebuilt by skops from allowed types only (nothing in the file is executed)."""
    from skops import io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    key = check_model_key(store, pointer)
    check_library_versions(pointer)
    payload = store.get_bytes(key)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != pointer["sha256"]:
        raise ModelRefused(
            f"model {key} has sha256 {digest}, but the pointer says {pointer['sha256']}: "
            f"refusing to load it",
            "its checksum does not match the pointer",
        )
    if not zipfile.is_zipfile(io.BytesIO(payload)):
        raise ModelRefused(
            f"model {key} is not a skops file: refusing to load it",
            "it is not a skops file",
        )
    try:
        return sio.loads(payload, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise ModelRefused(
            f"model {key} holds types outside the allow-list: {exc}", "it holds untrusted types"
        ) from None
