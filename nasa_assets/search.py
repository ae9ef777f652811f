"""Pure logic of the NASA Image Library pipeline: parsing, de-duplication, sampling, renditions.

No Dagster, no Spark, no HTTP here: the client feeds these functions the API's JSON and the
assets feed them to Spark, so every rule below is unit-tested on plain values.

The API's shapes (https://images.nasa.gov/docs/images.nasa.gov_api_docs.pdf):

- ``GET /search`` -> ``collection.items[]``, each with ``data[0]`` (``nasa_id``, ``title``,
  ``date_created``, ``center``, ``description``, ``keywords``, ``media_type``...), ``links[]``
  (previews) and ``href`` (the asset's ``collection.json``); ``collection.metadata.total_hits``;
  ``collection.links[]`` with ``rel: next`` while more pages follow.
- ``GET /asset/{nasa_id}`` -> ``collection.items[].href``: one file per rendition, named
  ``{nasa_id}~{orig|large|medium|small|thumb}.{ext}``, plus ``metadata.json`` and the like.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import polars as pl

RENDITIONS = ("orig", "large", "medium", "small", "thumb")
DEFAULT_RENDITION = "large"
IMAGE_EXTENSIONS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png", ".tif": ".tif",
                    ".tiff": ".tif", ".gif": ".gif"}  # fmt: skip
_RENDITION_IN_NAME = re.compile(r"~(orig|large|medium|small|thumb)\.[A-Za-z0-9]+$")

# The warehouse table, in column order.
SEARCH_SCHEMA = {
    "query": pl.String,
    "nasa_id": pl.String,
    "title": pl.String,
    "description": pl.String,
    "date_created": pl.Datetime("us", "UTC"),
    "center": pl.String,
    "keywords": pl.List(pl.String),
    "image_href": pl.String,
    "manifest_href": pl.String,
    "rank": pl.Int32,
}


class PayloadError(ValueError):
    """The API answered JSON that is not the documented shape; says which part is wrong."""


@dataclass(frozen=True)
class SearchPage:
    """One parsed ``/search`` page."""

    rows: list[dict[str, Any]]
    total_hits: int | None
    has_next: bool
    skipped: list[str] = field(default_factory=list)  # why items without a nasa_id were dropped


def _collection(payload: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("collection"), Mapping):
        raise PayloadError(f"{what}: expected a JSON object with a 'collection' object")
    return payload["collection"]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_date(value: Any) -> datetime | None:
    """``date_created`` as an aware UTC datetime; None when absent or not ISO 8601."""
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_keywords(value: Any) -> list[str]:
    """Keywords as a list: the API sends a list, sometimes one string of ``,``/``;`` items."""
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[;,]", str(value))
    return [k for k in (_text(v) for v in items) if k]


def _preview_href(links: Any) -> str | None:
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, Mapping) and link.get("rel") == "preview" and _text(link.get("href")):
            return _text(link["href"])
    return None


def parse_search_page(payload: Any, query: str, first_rank: int = 1) -> SearchPage:
    """Rows of one ``/search`` page; items without a ``nasa_id`` are skipped and listed.

    ``rank`` is the position in the result list (1-based across pages, from ``first_rank``).
    Missing optional fields (description, keywords, previews) become nulls/empty lists.
    """
    collection = _collection(payload, "search page")
    items = collection.get("items")
    if not isinstance(items, list):
        raise PayloadError("search page: 'collection.items' is missing or not a list")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for position, item in enumerate(items):
        data = item.get("data") if isinstance(item, Mapping) else None
        first = data[0] if isinstance(data, list) and data else None
        nasa_id = _text(first.get("nasa_id")) if isinstance(first, Mapping) else None
        if nasa_id is None:
            skipped.append(f"item {first_rank + position}: no data[0].nasa_id")
            continue
        rows.append(
            {
                "query": query,
                "nasa_id": nasa_id,
                "title": _text(first.get("title")),
                "description": _text(first.get("description")),
                "date_created": parse_date(first.get("date_created")),
                "center": _text(first.get("center")),
                "keywords": parse_keywords(first.get("keywords")),
                "image_href": _preview_href(item.get("links")),
                "manifest_href": _text(item.get("href")),
                "rank": first_rank + position,
            }
        )
    metadata = collection.get("metadata")
    total = metadata.get("total_hits") if isinstance(metadata, Mapping) else None
    links = collection.get("links")
    has_next = isinstance(links, list) and any(
        isinstance(link, Mapping) and link.get("rel") == "next" for link in links
    )
    return SearchPage(
        rows=rows,
        total_hits=int(total) if isinstance(total, int | float) else None,
        has_next=has_next and bool(items),
        skipped=skipped,
    )


def dedupe(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """First occurrence of each ``nasa_id`` (the API repeats items across pages), and how many
    repeats were dropped."""
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    dropped = 0
    for row in rows:
        if row["nasa_id"] in seen:
            dropped += 1
            continue
        seen.add(row["nasa_id"])
        kept.append(row)
    return kept, dropped


def sample_bucket(nasa_id: str, factor: int) -> int:
    """A stable bucket in ``[0, factor)`` from the id alone (not Python's salted ``hash``)."""
    digest = hashlib.sha256(nasa_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % factor


def sample(rows: list[dict[str, Any]], factor: int) -> list[dict[str, Any]]:
    """Keep about one row in ``factor``, chosen by id, so the sample is deterministic and an
    image stays in it when the search results shift or grow (unlike "every Nth row")."""
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"sampling factor must be an integer >= 1, got {factor!r}")
    if factor == 1:
        return list(rows)
    return [row for row in rows if sample_bucket(row["nasa_id"], factor) == 0]


def rendition_of(href: str) -> str | None:
    """``large`` for ``.../PIA123~large.jpg``; None for ``metadata.json`` and the like."""
    name = PurePosixPath(unquote(urlsplit(href).path)).name
    match = _RENDITION_IN_NAME.search(name)
    return match.group(1) if match else None


def rendition_preference(preferred: str) -> list[str]:
    """The preferred rendition, then smaller ones, then larger ones (closest size first)."""
    if preferred not in RENDITIONS:
        raise ValueError(f"rendition must be one of {', '.join(RENDITIONS)}, got {preferred!r}")
    at = RENDITIONS.index(preferred)
    return [*RENDITIONS[at:], *reversed(RENDITIONS[:at])]


def choose_rendition(manifest: Any, preferred: str = DEFAULT_RENDITION) -> tuple[str, str]:
    """``(rendition, href)`` from a ``/asset/{nasa_id}`` answer, falling back when the
    preferred size is not published (many items have no ``orig``, some no ``large``)."""
    collection = _collection(manifest, "asset manifest")
    items = collection.get("items")
    if not isinstance(items, list):
        raise PayloadError("asset manifest: 'collection.items' is missing or not a list")
    by_rendition: dict[str, str] = {}
    for item in items:
        href = _text(item.get("href")) if isinstance(item, Mapping) else None
        if href is None:
            continue
        name = rendition_of(href)
        if name and image_extension(href) is not None:
            by_rendition.setdefault(name, href)
    for name in rendition_preference(preferred):
        if name in by_rendition:
            return name, by_rendition[name]
    raise PayloadError("asset manifest lists no image rendition (orig/large/medium/small/thumb)")


def image_extension(href: str) -> str | None:
    """The normalised image extension of a URL (``.jpeg`` -> ``.jpg``), None if not an image."""
    suffix = PurePosixPath(unquote(urlsplit(href).path)).suffix.lower()
    return IMAGE_EXTENSIONS.get(suffix)


_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"),
          (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))  # fmt: skip
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif",
                 ".tif": "image/tiff"}  # fmt: skip


def sniff_extension(data: bytes) -> str | None:
    """The image type from its first bytes: what was really downloaded, whatever the URL says."""
    for magic, extension in _MAGIC:
        if data.startswith(magic):
            return extension
    return None


def search_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The warehouse table of one query's (de-duplicated, sampled) results."""
    return pl.DataFrame(rows, schema=SEARCH_SCHEMA)


def metadata_document(
    row: Mapping[str, Any], rendition: str, href: str, key: str, data: bytes
) -> dict[str, Any]:
    """What is stored beside an image: its search fields and exactly which file it is."""
    created = row.get("date_created")
    return {
        "query": row["query"],
        "nasa_id": row["nasa_id"],
        "title": row.get("title"),
        "description": row.get("description"),
        "date_created": created.isoformat().replace("+00:00", "Z")
        if isinstance(created, datetime)
        else created,
        "center": row.get("center"),
        "keywords": list(row.get("keywords") or []),
        "preview_href": row.get("image_href"),
        "manifest_href": row.get("manifest_href"),
        "rendition": rendition,
        "image_href": href,
        "image_key": key,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
