"""Object keys for the image library: ``{prefix}/nasa/{query}/images/{nasa_id}{ext}``.

Queries and ``nasa_id`` values come from users and from the API, so they are made safe before
they become key segments: no ``/`` (which would nest or escape folders), no ``..``, no spaces
or control characters. A value that is already safe is kept as is, so keys stay readable; any
other value is slugged and suffixed with a hash of the original, so two different ids never
share a key even when they slug alike (``"a b"`` and ``"a/b"``).
"""

from __future__ import annotations

import hashlib
import re

from nasa_assets.queries import require_normal_query

GROUP = "nasa"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
# S3 allows 1,024 bytes per key; a segment this long is still readable and leaves room.
MAX_SEGMENT = 120


def safe_key_component(value: str) -> str:
    """``value`` as one key segment: unchanged when already safe, else slug + ``-`` + 8 hex."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"an object key segment needs a non-empty string, got {value!r}")
    if _SAFE.fullmatch(value) and ".." not in value and len(value) <= MAX_SEGMENT:
        return value
    slug = _DOTS.sub(".", _UNSAFE_RUN.sub("_", value)).strip("._-")[:MAX_SEGMENT] or "id"
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}"


def query_folder(query: str) -> str:
    """The key folder of one search query, below the store prefix: ``nasa/{query}``. Only a
    query in normal form has one, so ``"moon "`` cannot get a folder beside ``moon``'s."""
    return f"{GROUP}/{safe_key_component(require_normal_query(query))}"


def image_key(query: str, nasa_id: str, extension: str) -> str:
    """``nasa/{query}/images/{nasa_id}{ext}`` (below the store prefix)."""
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", extension):
        raise ValueError(f"image extension must look like '.jpg', got {extension!r}")
    return f"{query_folder(query)}/images/{safe_key_component(nasa_id)}{extension}"


def search_results_key(query: str) -> str:
    """``nasa/{query}/search_results.parquet``: the search staged for the warehouse load."""
    return f"{query_folder(query)}/search_results.parquet"


def metadata_key(query: str, nasa_id: str) -> str:
    """``nasa/{query}/metadata/{nasa_id}.json``: written after the image, so it marks done."""
    return f"{query_folder(query)}/metadata/{safe_key_component(nasa_id)}.json"


def stored_ids(keys: list[str], query: str) -> tuple[set[str], set[str]]:
    """(safe ids with an image, safe ids with a metadata file) among a listing of the
    query's keys (full keys, any store prefix before ``nasa/``)."""
    folder = query_folder(query)
    images: set[str] = set()
    metadata: set[str] = set()
    for key in keys:
        head, sep, tail = key.rpartition(f"{folder}/")
        if not sep or "/" not in tail or (head and not head.endswith("/")):
            continue
        kind, _, name = tail.partition("/")
        if "/" in name:
            continue
        if kind == "images":
            stem, dot, _ = name.rpartition(".")
            images.add(stem if dot else name)
        elif kind == "metadata" and name.endswith(".json"):
            metadata.add(name.removesuffix(".json"))
    return images, metadata
