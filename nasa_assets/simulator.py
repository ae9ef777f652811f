"""In-process simulator of the NASA Image and Video Library API (images only).

Mounted on a ``requests.Session`` as a transport adapter on both of the library's hosts, so
in ``SOURCE_MODE=simulated`` the real client code path (URLs, params, pagination, retries,
downloads) runs and only the socket is replaced::

    sim = NasaImagesSimulator(seed=0)
    session.mount("https://images-api.nasa.gov", sim)
    session.mount("https://images-assets.nasa.gov", sim)

Endpoints, with the real API's shapes:

* ``GET images-api.nasa.gov/search?q=...&media_type=image&page=N&page_size=M`` — a
  ``collection`` with ``items``, ``metadata.total_hits`` and ``prev``/``next`` links (written
  with ``http://``, as the real API does). Pages past :data:`PAGE_CAP` are refused with HTTP
  400 whatever the catalog size. The catalog of a query is deterministic in
  (seed, normalised query) — see :func:`catalog` for its quirks (missing fields, duplicates
  across page boundaries, ids with spaces, apostrophes and tildes).
* ``GET images-api.nasa.gov/asset/{nasa_id}`` — the rendition manifest.
* ``GET images-assets.nasa.gov/image/{nasa_id}/{nasa_id}~{rendition}.png`` — a small valid
  PNG (see :func:`png_bytes`); also ``metadata.json`` and ``collection.json`` next to it.
  Missing keys answer S3's ``NoSuchKey`` XML.

The asset and image endpoints need no prior search: Spark workers build their own simulator,
so any plausible id (non-empty, not containing "unknown") exists, and which renditions it has
is a function of (seed, nasa_id) alone — see :func:`asset_renditions` — rather than of its
catalog index. About 1 id in 13 has no ``orig`` and 1 in 17 no ``large``.

Requests to ``images-api.nasa.gov`` are held to api.nasa.gov's documented 1,000 requests an
hour, as a sliding 3,600 s window on the injected clock; they all carry ``X-RateLimit-Limit``
and ``X-RateLimit-Remaining``. Refused requests (429) do not consume quota. The assets host
is a plain S3 bucket: no rate limit.

Simplifications: only the ``q`` and ``media_type`` search filters (``title``, ``center``,
``year_start`` ... are ignored); every result is an image; renditions are PNGs rather than
the real JPEGs; ``metadata.json`` holds a few AVAIL/File fields derived from the id only.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import requests

from resources.simulators.adapter import SimulatorAdapter
from resources.simulators.faults import FaultPlan

__all__ = [
    "API_BASE_URL",
    "ASSETS_BASE_URL",
    "DEFAULT_REQUESTS_PER_HOUR",
    "MISSING_Q_REASON",
    "NO_SUCH_KEY_BODY",
    "OVER_RATE_LIMIT_BODY",
    "PAGE_CAP",
    "PAGE_CAP_REASON",
    "RENDITIONS",
    "RENDITION_SIZES",
    "NasaImagesSimulator",
    "asset_renditions",
    "catalog",
    "catalog_size",
    "normalize_query",
    "png_bytes",
]

API_BASE_URL = "https://images-api.nasa.gov"
ASSETS_BASE_URL = "https://images-assets.nasa.gov"
_API_HOST = urlsplit(API_BASE_URL).hostname
_ASSETS_HOST = urlsplit(ASSETS_BASE_URL).hostname
# The API writes its own links with http://, even when called over https.
_API_LINK_BASE = "http://images-api.nasa.gov"

PAGE_CAP = 100
PAGE_CAP_REASON = (
    "Maximum number of search results have been displayed. "
    "Please refine your search to narrow down your results."
)
MISSING_Q_REASON = "Expected 'q' text search parameter or other keywords."
RENDITIONS = ("orig", "large", "medium", "small", "thumb")
RENDITION_SIZES = {
    "orig": (800, 600),
    "large": (640, 480),
    "medium": (320, 240),
    "small": (160, 120),
    "thumb": (100, 75),
}
DEFAULT_REQUESTS_PER_HOUR = 1000
RATE_LIMIT_WINDOW_S = 3600.0
DEFAULT_PAGE_SIZE = 100
MOON_HITS = 240

# api.nasa.gov's (API Umbrella) refusal, byte for byte, pretty-printed as it sends it.
OVER_RATE_LIMIT_BODY = (
    b'{\n  "error": {\n    "code": "OVER_RATE_LIMIT",\n    "message": "You have exceeded your '
    b"rate limit. Try again later or contact us at https://api.nasa.gov:443/contact/ for "
    b'assistance"\n  }\n}'
)
# S3's answers for the assets bucket.
NO_SUCH_KEY_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)
_INTERNAL_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
_XML_CONTENT_TYPE = "application/xml"
_PNG_CONTENT_TYPE = "image/png"
_API_HEADERS = {"Access-Control-Allow-Origin": "*", "Server": "nginx"}
_ASSETS_HEADERS = {"Server": "AmazonS3", "Accept-Ranges": "bytes"}

_Answer = tuple[int, Any, str | None]

# --------------------------------------------------------------------------- hashing


def _digest(seed: int, *parts: object, size: int = 8) -> int:
    """A deterministic non-negative integer from (seed, parts)."""
    raw = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=size).digest()
    return int.from_bytes(raw, "big")


class _Draw:
    """Successive small pseudo-random picks peeled off one big hash."""

    __slots__ = ("_h",)

    def __init__(self, h: int) -> None:
        self._h = h

    def below(self, n: int) -> int:
        self._h, r = divmod(self._h, n)
        return r

    def pick(self, options: tuple[Any, ...] | list[Any]) -> Any:
        return options[self.below(len(options))]


# --------------------------------------------------------------------------- catalog


def normalize_query(query: str) -> str:
    """Lower-case, runs of whitespace collapsed to one space, stripped."""
    return " ".join(query.lower().split())


def catalog_size(seed: int, query: str) -> int:
    """Number of hits of a query: 240 for "moon", else 40-400 from (seed, normalised query)."""
    nq = normalize_query(query)
    if nq == "moon":
        return MOON_HITS
    return 40 + _digest(seed, "size", nq) % 361


_CENTER_NAMES = {
    "JPL": "NASA's Jet Propulsion Laboratory",
    "GSFC": "NASA's Goddard Space Flight Center",
    "KSC": "NASA's Kennedy Space Center",
    "JSC": "NASA's Johnson Space Center",
    "ARC": "NASA's Ames Research Center",
    "MSFC": "NASA's Marshall Space Flight Center",
    "HQ": "NASA Headquarters",
}
_CREATORS = {
    "JPL": ("NASA/JPL-Caltech", "NASA/JPL-Caltech/MSSS", "NASA/JPL-Caltech/Univ. of Arizona"),
    "GSFC": ("NASA/Goddard/Rebecca Roth", "NASA/Goddard/Bill Hrybyk", "NASA/GSFC"),
    "KSC": ("NASA/Kim Shiflett", "NASA/Kim Shiflett", "NASA/Ben Smegelsky"),
    "JSC": ("NASA/Neil Armstrong", "NASA/JSC", "NASA/Robert Markowitz"),
    "ARC": ("NASA/Ames Research Center", "NASA/Dominic Hart", "NASA/Eric James"),
    "MSFC": ("NASA/MSFC/Emmett Given", "NASA/MSFC/Fred Deaton", "NASA/MSFC"),
    "HQ": ("NASA/Bill Ingalls", "NASA/Aubrey Gemignani", "NASA/Joel Kowsky"),
}
_TITLES = (
    "View of the {q}",
    "{Q} Observation",
    "{Q} Mosaic",
    "Close-up of the {q}",
    "{Q} at Sunset",
    "{Q} Study",
    "Artist's Concept of the {q}",
    "{Q} Survey Image",
    "The {q} from Orbit",
    "{Q} in Color",
)
_SENTENCES = (
    "The picture was processed to bring out fine surface detail.",
    "Colors have been enhanced to highlight differences in composition.",
    "The image was released to mark the anniversary of the mission.",
    "Scientists use such views to plan future observations.",
    "North is up in this view.",
    "The scene spans several hundred kilometers.",
)
_MONTHS = (
    "", "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_EXTRA_KEYWORDS = (
    "Apollo",
    "Astronomy",
    "Lunar",
    "Earth",
    "International Space Station",
    "Planetary Science",
    "Artemis",
    "Hubble",
    "Solar System",
    "Astronaut",
)


def _id_pia(n: int, when: datetime, d: _Draw) -> str:
    return f"PIA{n % 100_000:05d}"


def _id_apollo(n: int, when: datetime, d: _Draw) -> str:
    mission = d.pick((11, 12, 14, 15, 16, 17))
    return f"as{mission}-4{n // 10_000 % 10}-{n % 10_000:04d}"


def _id_iss(n: int, when: datetime, d: _Draw) -> str:
    return f"iss0{10 + d.below(60)}e{n % 1_000_000:06d}"


def _id_jsc(n: int, when: datetime, d: _Draw) -> str:
    return f"jsc{when.year}e{n % 1_000_000:06d}"


def _id_gsfc(n: int, when: datetime, d: _Draw) -> str:
    return f"GSFC_{when:%Y%m%d}_Archive_e0{n % 100_000:05d}"


def _id_ksc(n: int, when: datetime, d: _Draw) -> str:
    return f"KSC-{when:%Y%m%d}-PH-KLS0{n // 10_000 % 10}_{n % 10_000:04d}"


def _id_arc(n: int, when: datetime, d: _Draw) -> str:
    return f"ARC-{when.year}-AC{when:%y}-{n % 100_000:05d}"


def _id_msfc(n: int, when: datetime, d: _Draw) -> str:
    return f"MSFC-{when:%y}{n % 100_000:05d}"


def _id_hq(n: int, when: datetime, d: _Draw) -> str:
    return f"NHQ{when:%Y%m%d}{n % 100_000:05d}"


# (center, first year, last year, id maker). Every maker keeps the last 5+ digits of the
# per-query permutation n, so ids are unique within a catalog of up to 100,000 entries.
_ID_PATTERNS: tuple[tuple[str, int, int, Callable[[int, datetime, _Draw], str]], ...] = (
    ("JPL", 1990, 2024, _id_pia),
    ("JPL", 1990, 2024, _id_pia),
    ("JSC", 1969, 1972, _id_apollo),
    ("JSC", 2000, 2024, _id_iss),
    ("JSC", 1998, 2024, _id_jsc),
    ("GSFC", 1960, 2024, _id_gsfc),
    ("KSC", 1960, 2024, _id_ksc),
    ("ARC", 1960, 2024, _id_arc),
    ("MSFC", 1960, 2024, _id_msfc),
    ("HQ", 1990, 2024, _id_hq),
)
_UNIQUE_SPAN = 100_000


@lru_cache(maxsize=1024)
def _permutation(seed: int, nq: str) -> tuple[int, int]:
    """(a, b) of the bijection i -> (a*i + b) mod 10**k of a query (a coprime to 10)."""
    h = _Draw(_digest(seed, "ids", nq, size=16))
    a = 1 + 2 * h.below(500_000)
    if a % 5 == 0:
        a += 2
    return a, h.below(1_000_000)


@lru_cache(maxsize=64)
def _year_span(first_year: int, last_year: int) -> tuple[datetime, int]:
    start = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    return start, int((end - start).total_seconds())


def _date_between(d: _Draw, first_year: int, last_year: int) -> datetime:
    """A whole-second instant within [first_year, last_year], UTC."""
    start, span = _year_span(first_year, last_year)
    return start + timedelta(seconds=d.below(span))


def _special_id(index: int) -> str | None:
    """The awkward ids real clients meet: a space (index 3), an apostrophe + tilde (5)."""
    if index == 3:
        return f"Moon Landing {index} 1969"
    if index == 5:
        return f"Aldrin's Bootprint~{index}"
    return None


def _item(seed: int, nq: str, index: int) -> dict[str, Any]:
    """Catalog entry ``index`` of normalised query ``nq``, freshly built."""
    if index > 0 and index % 100 == 0:
        index -= 1  # an exact copy of the previous entry, as the real API repeats items
    d = _Draw(_digest(seed, "item", nq, index, size=32))
    center, first_year, last_year, make_id = _ID_PATTERNS[d.below(len(_ID_PATTERNS))]
    when = _date_between(d, first_year, last_year)
    nasa_id = _special_id(index)
    if nasa_id is not None:
        center, when = "HQ", datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)
    else:
        a, b = _permutation(seed, nq)
        nasa_id = make_id((a * index + b) % 1_000_000, when, d)
        if index >= _UNIQUE_SPAN:
            nasa_id = f"{nasa_id}_{index}"
    title_q = nq.title()
    title = d.pick(_TITLES).format(q=nq, Q=title_q)
    data: dict[str, Any] = {
        "center": center,
        "title": title,
        "nasa_id": nasa_id,
        "date_created": f"{when.isoformat()[:19]}Z",
    }
    keywords = [title_q, *{d.pick(_EXTRA_KEYWORDS): None for _ in range(1 + d.below(3))}]
    if index % 9 != 4:
        data["keywords"] = keywords
    data["media_type"] = "image"
    if index % 7 != 2:
        data["description"] = (
            f"This image of the {nq} comes from {_CENTER_NAMES[center]} and is dated "
            f"{_MONTHS[when.month]} {when.day}, {when.year}. {d.pick(_SENTENCES)}"
        )
        data["description_508"] = f"{title}: an image of the {nq} from NASA's {center}."
    data["secondary_creator"] = d.pick(_CREATORS[center])
    quoted = quote(nasa_id, safe="")
    item: dict[str, Any] = {
        "href": f"{ASSETS_BASE_URL}/image/{quoted}/collection.json",
        "data": [data],
    }
    if index % 11 != 4:
        item["links"] = [
            {
                "href": f"{ASSETS_BASE_URL}/image/{quoted}/{quoted}~thumb.png",
                "rel": "preview",
                "render": "image",
            }
        ]
    return item


def catalog(seed: int, query: str, size: int | None = None) -> list[dict[str, Any]]:
    """The search items of ``query``, in result order, duplicates included.

    Deterministic in (seed, normalised query, index); a catalog is a prefix of any larger
    catalog of the same query, so ``size`` only truncates (default :func:`catalog_size`).
    Quirks, by index i: entries with i % 100 == 0 (i > 0) repeat entry i - 1 exactly (with
    ``page_size=100`` the last item of a page reappears first on the next); no
    ``description``/``description_508`` when i % 7 == 2, no ``keywords`` when i % 9 == 4, no
    ``links`` (preview) when i % 11 == 4; entry 3's id has spaces, entry 5's an apostrophe
    and a tilde. Other ids follow real patterns (``PIA12345``, ``as11-40-5874``,
    ``iss042e123456``, ``KSC-20200530-PH-KLS01_0123`` ...) and are unique within a catalog.
    """
    nq = normalize_query(query)
    n = catalog_size(seed, nq) if size is None else size
    return [_item(seed, nq, i) for i in range(n)]


def _id_exists(nasa_id: str) -> bool:
    return bool(nasa_id) and "unknown" not in nasa_id.lower()


def asset_renditions(nasa_id: str, seed: int = 0) -> tuple[str, ...]:
    """Renditions the asset manifest lists for ``nasa_id``, from (seed, id) alone.

    No ``orig`` when the id's hash % 13 == 6, no ``large`` when it is % 17 == 8 (clients
    must fall back); ``medium``, ``small`` and ``thumb`` always exist.
    """
    h = _digest(seed, "renditions", nasa_id)
    missing = set()
    if h % 13 == 6:
        missing.add("orig")
    if h % 17 == 8:
        missing.add("large")
    return tuple(r for r in RENDITIONS if r not in missing)


# --------------------------------------------------------------------------- PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_VARIANTS = 32


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_IEND = _chunk(b"IEND", b"")


def _tint(variant: int) -> tuple[int, int, int]:
    d = _Draw(_digest(0, "tint", variant))
    return 64 + d.below(192), 64 + d.below(192), 64 + d.below(192)


@lru_cache(maxsize=256)
def _image_chunks(width: int, height: int, variant: int) -> tuple[bytes, bytes]:
    """(IHDR chunk, IDAT chunk) of a tinted gradient; only the tEXt chunk varies per key."""
    tr, tg, tb = _tint(variant)
    ramp = bytes(tr * x // max(width - 1, 1) for x in range(width))
    blue = bytes([tb]) * width
    row = bytearray(3 * width)
    row[0::3] = ramp
    row[2::3] = blue
    lines = []
    for y in range(height):
        row[1::3] = bytes([tg * (height - y) // height]) * width
        lines.append(b"\x00" + row)  # filter type 0 (None)
    idat = zlib.compress(b"".join(lines), 6)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return _chunk(b"IHDR", ihdr), _chunk(b"IDAT", idat)


def _comment_chunk(key: str) -> bytes:
    try:
        return _chunk(b"tEXt", b"Comment\x00" + key.encode("latin-1"))
    except UnicodeEncodeError:  # iTXt: uncompressed, no language tag, UTF-8 text
        return _chunk(b"iTXt", b"Comment\x00\x00\x00\x00\x00" + key.encode("utf-8"))


def png_bytes(width: int, height: int, key: str, seed: int = 0) -> bytes:
    """A valid 8-bit RGB PNG, deterministic in (width, height, key, seed).

    Pixels are a gradient tinted by one of 32 colours picked from hash(seed, key); a
    ``Comment`` text chunk holds ``key``, so different keys give different bytes. The
    compressed pixels are cached per (width, height, colour), so this is a few joins.
    """
    if width < 1 or height < 1:
        raise ValueError("width and height must be positive")
    ihdr, idat = _image_chunks(width, height, _digest(seed, "png", key) % _COLOUR_VARIANTS)
    return b"".join((_PNG_SIGNATURE, ihdr, _comment_chunk(key), idat, _IEND))


# --------------------------------------------------------------------------- simulator


def _positive_int(raw: str | None, default: int) -> int | None:
    """The parameter as an integer >= 1, its default when absent, None when invalid."""
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def _bad_parameter(name: str, raw: str) -> _Answer:
    return 400, {"reason": f"Invalid value {raw!r} for '{name}': expected an integer >= 1."}, None


def _search_link(pairs: list[tuple[str, str]], page: int) -> str:
    """The request's parameters, in their order, with ``page`` set."""
    out = [(k, v) for k, v in pairs if k != "page"]
    at = next((i for i, (k, _) in enumerate(pairs) if k == "page"), len(out))
    out.insert(at, ("page", str(page)))
    return f"{_API_LINK_BASE}/search?{urlencode(out)}"


def _not_found() -> _Answer:
    return 404, {"reason": "Not found"}, None


def _no_such_key() -> _Answer:
    return 404, NO_SUCH_KEY_BODY, _XML_CONTENT_TYPE


class NasaImagesSimulator(SimulatorAdapter):
    """Transport adapter answering images-api.nasa.gov and images-assets.nasa.gov.

    Thread-safe (counters and the rate-limit window are under the base class's lock) and
    cheap to build: catalog entries are generated per requested page, PNG pixels cached at
    module level.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        requests_per_hour: int = DEFAULT_REQUESTS_PER_HOUR,
        catalog_sizes: Mapping[str, int] | None = None,
        default_catalog_size: int | None = None,
        failing_ids: Iterable[str] = (),
        latency_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        faults: FaultPlan | None = None,
    ) -> None:
        """
        Args:
            seed: selects the synthetic catalogs and images; same seed, same answers.
            requests_per_hour: images-api requests allowed in any sliding 3,600 s window.
            catalog_sizes: normalised query -> number of hits, overriding
                :func:`catalog_size` (e.g. 12,000 to reach the page cap).
            default_catalog_size: hits for every query not in ``catalog_sizes`` (None:
                :func:`catalog_size`), e.g. 2,000 for the download benchmark.
            failing_ids: nasa_ids whose image files always answer HTTP 500.
            latency_s: wait this long before every answer, like a network round trip (0:
                none); the download benchmark uses it to show how tasks overlap waiting.
            clock: seconds, for the rate-limit window (tests inject a fake one).
            faults: injected failures (``SIMULATOR_FAULT_RATE``); default none.
        """
        super().__init__(faults)
        if requests_per_hour < 1:
            raise ValueError("requests_per_hour must be positive")
        self.seed = int(seed)
        self.requests_per_hour = int(requests_per_hour)
        self.catalog_sizes = {normalize_query(q): int(n) for q, n in (catalog_sizes or {}).items()}
        if any(n < 0 for n in self.catalog_sizes.values()):
            raise ValueError("catalog sizes must be >= 0")
        if default_catalog_size is not None and default_catalog_size < 0:
            raise ValueError("default_catalog_size must be >= 0")
        self.default_catalog_size = default_catalog_size
        self.failing_ids = frozenset(failing_ids)
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        self.latency_s = float(latency_s)
        self._clock = clock
        self._window: deque[float] = deque()  # clock times of the accepted API requests
        self._api_calls = 0
        self._download_calls = 0

    @property
    def api_calls(self) -> int:
        """Requests to images-api.nasa.gov (any status, 429s included)."""
        return self._api_calls

    @property
    def download_calls(self) -> int:
        """Requests to images-assets.nasa.gov (any status)."""
        return self._download_calls

    def size_of(self, query: str) -> int:
        """Number of hits this instance reports for ``query``."""
        nq = normalize_query(query)
        size = self.catalog_sizes.get(nq, self.default_catalog_size)
        return catalog_size(self.seed, nq) if size is None else size

    # -- transport

    def answer(self, request: requests.PreparedRequest) -> _Answer:
        status, body, content_type, _ = self.respond(request)
        return status, body, content_type

    def respond(
        self, request: requests.PreparedRequest
    ) -> tuple[int, Any, str | None, dict[str, str]]:
        """The answer with its per-response headers (rate-limit state, server)."""
        if self.latency_s:
            time.sleep(self.latency_s)
        url = urlsplit(request.url or "")
        host = (url.hostname or "").lower()
        if host == _ASSETS_HOST:
            with self._lock:
                self._download_calls += 1
            status, body, content_type = self._assets(request.method, url.path)
            return status, body, content_type, dict(_ASSETS_HEADERS)
        if host != _API_HOST:
            return (*_not_found(), {})
        with self._lock:
            self._api_calls += 1
            allowed, remaining = self._take_quota()
        headers = {
            **_API_HEADERS,
            "X-RateLimit-Limit": str(self.requests_per_hour),
            "X-RateLimit-Remaining": str(remaining),
        }
        if not allowed:
            return 429, OVER_RATE_LIMIT_BODY, None, headers
        status, body, content_type = self._api(request.method, url.path, url.query)
        return status, body, content_type, headers

    def _take_quota(self) -> tuple[bool, int]:
        """Sliding-window limit; must hold self._lock. (allowed, remaining after it)."""
        now = self._clock()
        window = self._window
        while window and window[0] <= now - RATE_LIMIT_WINDOW_S:
            window.popleft()
        if len(window) >= self.requests_per_hour:
            return False, 0
        window.append(now)
        return True, self.requests_per_hour - len(window)

    # -- images-api.nasa.gov

    def _api(self, method: str | None, path: str, query: str) -> _Answer:
        segments = path.split("/")
        if method != "GET":
            return 405, {"reason": f"Method {method} not allowed"}, None
        if path.rstrip("/") == "/search":
            return self._search(query)
        if len(segments) == 3 and segments[1] == "asset":
            return self._asset(unquote(segments[2]))
        return _not_found()

    def _search(self, query: str) -> _Answer:
        pairs = parse_qsl(query, keep_blank_values=True)
        params: dict[str, str] = {}
        for name, value in pairs:
            params.setdefault(name, value)
        nq = normalize_query(params.get("q", ""))
        if not nq:
            return 400, {"reason": MISSING_Q_REASON}, None
        page = _positive_int(params.get("page"), 1)
        if page is None:
            return _bad_parameter("page", params["page"])
        page_size = _positive_int(params.get("page_size"), DEFAULT_PAGE_SIZE)
        if page_size is None:
            return _bad_parameter("page_size", params["page_size"])
        if page > PAGE_CAP:
            return 400, {"reason": PAGE_CAP_REASON}, None
        media = {m.strip().lower() for m in params.get("media_type", "").split(",") if m.strip()}
        size = self.size_of(nq) if not media or "image" in media else 0
        start = (page - 1) * page_size
        stop = min(start + page_size, size)
        items = [_item(self.seed, nq, i) for i in range(start, stop)]
        collection: dict[str, Any] = {
            "version": "1.0",
            "href": f"{_API_LINK_BASE}/search?{query}",
            "items": items,
            "metadata": {"total_hits": size},
        }
        links = []
        if page > 1:
            links.append(
                {"rel": "prev", "prompt": "Previous", "href": _search_link(pairs, page - 1)}
            )
        if stop < size:
            links.append({"rel": "next", "prompt": "Next", "href": _search_link(pairs, page + 1)})
        if links:
            collection["links"] = links
        return 200, {"collection": collection}, None

    def _asset(self, nasa_id: str) -> _Answer:
        if not _id_exists(nasa_id):
            return 404, {"reason": f"No asset found for nasa_id {nasa_id}"}, None
        collection = {
            "version": "1.0",
            "href": f"{_API_LINK_BASE}/asset/{quote(nasa_id, safe='')}",
            "items": [{"href": href} for href in self._files(nasa_id)],
        }
        return 200, {"collection": collection}, None

    def _files(self, nasa_id: str) -> list[str]:
        quoted = quote(nasa_id, safe="")
        base = f"{ASSETS_BASE_URL}/image/{quoted}"
        hrefs = [f"{base}/{quoted}~{r}.png" for r in asset_renditions(nasa_id, self.seed)]
        return [*hrefs, f"{base}/metadata.json"]

    # -- images-assets.nasa.gov

    def _assets(self, method: str | None, path: str) -> _Answer:
        if method not in ("GET", "HEAD"):
            return 405, b"", _XML_CONTENT_TYPE
        segments = path.split("/")
        if len(segments) != 4 or segments[1] != "image":
            return _no_such_key()
        nasa_id, filename = unquote(segments[2]), unquote(segments[3])
        if not _id_exists(nasa_id):
            return _no_such_key()
        if filename == "metadata.json":
            return 200, self._metadata(nasa_id), None
        if filename == "collection.json":
            return (
                200,
                [href.replace("https://", "http://", 1) for href in self._files(nasa_id)],
                None,
            )
        prefix = f"{nasa_id}~"
        if not (filename.startswith(prefix) and filename.endswith(".png")):
            return _no_such_key()
        if nasa_id in self.failing_ids:
            return 500, _INTERNAL_ERROR_BODY, _XML_CONTENT_TYPE
        rendition = filename[len(prefix) : -len(".png")]
        if rendition not in asset_renditions(nasa_id, self.seed):
            return _no_such_key()
        width, height = RENDITION_SIZES[rendition]
        return 200, png_bytes(width, height, key=nasa_id, seed=self.seed), _PNG_CONTENT_TYPE

    def _metadata(self, nasa_id: str) -> dict[str, Any]:
        available = asset_renditions(nasa_id, self.seed)
        width, height = RENDITION_SIZES[available[0]]
        return {
            "AVAIL:NASAID": nasa_id,
            "AVAIL:Title": nasa_id.replace("_", " "),
            "AVAIL:MediaType": "image",
            "File:FileType": "PNG",
            "File:MIMEType": _PNG_CONTENT_TYPE,
            "File:ImageWidth": width,
            "File:ImageHeight": height,
        }
