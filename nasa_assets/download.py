"""The per-item download step that Spark runs inside each task: plain Python, no Spark DSL.

``download_partition`` receives one Spark partition's search rows, opens ONE client (HTTP
session + its share of the rate limit) for them, and for each item resolves the rendition
(``/asset/{nasa_id}``), downloads the file, and writes the image and then its metadata JSON to
the object store. The metadata file is written last, so its presence means "done" and a resumed
run can skip the item. A per-item failure (HTTP, bad manifest, not an image) is returned as an
outcome, never raised: one broken item must not lose the partition's other downloads. Storage
errors do raise: they are not the item's fault and retrying the run is the remedy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nasa_assets.client import NasaClientSpec, NasaImagesClient
from nasa_assets.keys import image_key, metadata_key
from nasa_assets.search import (
    CONTENT_TYPES,
    DEFAULT_RENDITION,
    PayloadError,
    choose_rendition,
    image_extension,
    metadata_document,
    sniff_extension,
)
from resources.http import ApiError
from resources.object_store import ObjectStoreSpec

DOWNLOADED = "downloaded"
FAILED = "failed"
SKIPPED = "skipped"
_ERROR_CHARS = 300
# An id that is a whole relative path segment cannot be requested: "/asset/.." is normalised
# to "/" on the way (by requests, or by the server), which asks for another URL altogether.
_DOT_SEGMENTS = frozenset({".", ".."})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadJob:
    """What every task of one run needs (pickled once to the workers)."""

    client: NasaClientSpec
    store: ObjectStoreSpec
    query: str
    rendition: str = DEFAULT_RENDITION
    progress_every: int = 50


def download_one(client: NasaImagesClient, store: Any, job: DownloadJob, row: dict) -> dict:
    """Fetch one item's image + write it and its metadata; an outcome dict either way."""
    nasa_id = row["nasa_id"]
    started = time.perf_counter()
    outcome: dict[str, Any] = {"nasa_id": nasa_id, "bytes": 0, "rendition": None, "key": None}
    try:
        if nasa_id in _DOT_SEGMENTS:
            raise PayloadError(
                f"nasa_id {nasa_id!r} cannot be requested: /asset/{nasa_id} is a relative "
                "path, not an item"
            )
        rendition, href = choose_rendition(client.asset_manifest(nasa_id), job.rendition)
        data = client.download(href)
        extension = sniff_extension(data)
        if extension is None:
            raise PayloadError(
                f"{href} did not return an image (first bytes {data[:8]!r}, "
                f"URL suffix {image_extension(href) or 'none'})"
            )
        key = store.key(image_key(job.query, nasa_id, extension))
        store.put_bytes(key, data, CONTENT_TYPES[extension])
        document = metadata_document(row, rendition, href, key, data)
        store.put_bytes(
            store.key(metadata_key(job.query, nasa_id)),
            json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8"),
            "application/json",
        )
        outcome.update(status=DOWNLOADED, bytes=len(data), rendition=rendition, key=key)
        outcome["error"] = None
    except (ApiError, PayloadError) as exc:
        outcome.update(status=FAILED, error=str(exc)[:_ERROR_CHARS])
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def download_partition(job: DownloadJob, index: int, rows: Iterable[dict]) -> Iterator[dict]:
    """Spark ``mapPartitionsWithIndex`` body: one client for the partition, one outcome per row
    (tagged with the partition index), progress logged every ``progress_every`` items."""
    client = job.client.build(log)
    store = job.store.build()
    done = failed = 0
    started = time.perf_counter()
    try:
        for row in rows:
            outcome = download_one(client, store, job, row)
            outcome["partition"] = index
            done += 1
            failed += outcome["status"] == FAILED
            if done % job.progress_every == 0:
                log.info(
                    "nasa_images %s partition %d: %d items, %d failed, %.1f s",
                    job.query,
                    index,
                    done,
                    failed,
                    time.perf_counter() - started,
                )
            yield outcome
    finally:
        client.close()
    log.info(
        "nasa_images %s partition %d finished: %d items, %d failed, %.1f s",
        job.query,
        index,
        done,
        failed,
        time.perf_counter() - started,
    )


def summarize(outcomes: list[dict]) -> dict[str, Any]:
    """Counts and bytes over outcomes, overall and per Spark partition."""
    per_partition: dict[int, dict[str, Any]] = {}
    for outcome in outcomes:
        part = per_partition.setdefault(
            outcome.get("partition", 0),
            {DOWNLOADED: 0, FAILED: 0, "bytes": 0, "seconds": 0.0},
        )
        part[outcome["status"]] += 1
        part["bytes"] += outcome["bytes"]
        part["seconds"] += outcome["seconds"]
    return {
        DOWNLOADED: sum(p[DOWNLOADED] for p in per_partition.values()),
        FAILED: sum(p[FAILED] for p in per_partition.values()),
        "bytes": sum(p["bytes"] for p in per_partition.values()),
        "partitions": dict(sorted(per_partition.items())),
    }
