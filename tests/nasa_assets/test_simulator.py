"""The NASA Image and Video Library simulator, exercised through a real requests.Session."""

from __future__ import annotations

import json
import struct
import zlib
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from nasa_assets.simulator import (
    API_BASE_URL,
    ASSETS_BASE_URL,
    DEFAULT_REQUESTS_PER_HOUR,
    NO_SUCH_KEY_BODY,
    PAGE_CAP,
    PAGE_CAP_REASON,
    RENDITION_SIZES,
    RENDITIONS,
    NasaImagesSimulator,
    asset_renditions,
    catalog,
    catalog_size,
    normalize_query,
    png_bytes,
)

SEARCH = f"{API_BASE_URL}/search"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def mounted(sim: NasaImagesSimulator) -> requests.Session:
    session = requests.Session()
    session.mount(API_BASE_URL, sim)
    session.mount(ASSETS_BASE_URL, sim)
    return session


@pytest.fixture
def sim() -> NasaImagesSimulator:
    return NasaImagesSimulator(seed=0)


@pytest.fixture
def session(sim: NasaImagesSimulator) -> requests.Session:
    return mounted(sim)


def search(session: requests.Session, q: str | None = "moon", **params) -> requests.Response:
    query = {"media_type": "image", **params}
    if q is not None:
        query = {"q": q, **query}
    return session.get(SEARCH, params=query)


def ids(response: requests.Response) -> list[str]:
    return [item["data"][0]["nasa_id"] for item in response.json()["collection"]["items"]]


def links(response: requests.Response) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in response.json()["collection"].get("links", [])}


def moon_ids(seed: int = 0) -> list[str]:
    return [item["data"][0]["nasa_id"] for item in catalog(seed, "moon")]


def image_url(nasa_id: str, rendition: str) -> str:
    quoted = quote(nasa_id, safe="")
    return f"{ASSETS_BASE_URL}/image/{quoted}/{quoted}~{rendition}.png"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, checking every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


# --------------------------------------------------------------------------- search


def test_search_shape(session):
    response = search(session, page=1, page_size=100)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    collection = response.json()["collection"]
    assert collection["version"] == "1.0"
    assert collection["href"] == (
        "http://images-api.nasa.gov/search?q=moon&media_type=image&page=1&page_size=100"
    )
    assert collection["metadata"] == {"total_hits": 240}
    assert len(collection["items"]) == 100
    item = next(i for i in collection["items"] if set(i["data"][0]) >= {"description"})
    data = item["data"][0]
    assert set(data) >= {"center", "title", "nasa_id", "date_created", "media_type"}
    assert data["media_type"] == "image"
    assert data["center"] in {"JPL", "GSFC", "KSC", "JSC", "ARC", "MSFC", "HQ"}
    assert "moon" in data["title"].lower() and "moon" in data["description"].lower()
    assert 1960 <= int(data["date_created"][:4]) <= 2024
    assert data["date_created"].endswith("Z") and len(data["date_created"]) == 20
    quoted = quote(data["nasa_id"], safe="")
    assert item["href"] == f"{ASSETS_BASE_URL}/image/{quoted}/collection.json"
    for entry in collection["items"]:
        if "links" in entry:
            assert entry["links"] == [
                {
                    "href": f"{ASSETS_BASE_URL}/image/"
                    + f"{quote(entry['data'][0]['nasa_id'], safe='')}"
                    + f"/{quote(entry['data'][0]['nasa_id'], safe='')}~thumb.png",
                    "rel": "preview",
                    "render": "image",
                }
            ]
        if "keywords" in entry["data"][0]:
            assert entry["data"][0]["keywords"][0] == "Moon"


def test_moon_has_240_hits_and_other_queries_are_deterministic_in_range():
    assert catalog_size(0, "moon") == 240
    assert catalog_size(7, "  MOON ") == 240
    for q in ("mars", "apollo 11", "hubble", "saturn rings", "earth"):
        size = catalog_size(0, q)
        assert 40 <= size <= 400
        assert size == catalog_size(0, q.upper() + "  ")
    assert normalize_query("  Apollo \t 11\n") == "apollo 11"
    assert len(catalog(0, "moon")) == 240
    assert len(catalog(0, "mars", size=7)) == 7


def test_pagination_and_links(session):
    first = search(session, page=1, page_size=100)
    assert links(first).keys() == {"next"}
    next_query = parse_qs(urlsplit(links(first)["next"]).query)
    assert links(first)["next"].startswith("http://images-api.nasa.gov/search?")
    assert next_query == {
        "q": ["moon"],
        "media_type": ["image"],
        "page": ["2"],
        "page_size": ["100"],
    }
    second = session.get(links(first)["next"].replace("http://", "https://"))
    assert second.status_code == 200
    assert links(second).keys() == {"prev", "next"}
    assert parse_qs(urlsplit(links(second)["prev"]).query)["page"] == ["1"]
    third = search(session, page=3, page_size=100)
    assert len(ids(third)) == 40
    assert links(third).keys() == {"prev"}
    every = ids(first) + ids(second) + ids(third)
    assert every == moon_ids()


def test_page_defaults_and_small_pages(session):
    default = session.get(SEARCH, params={"q": "moon"})
    assert ids(default) == moon_ids()[:100]
    small = search(session, page=4, page_size=10)
    assert ids(small) == moon_ids()[30:40]
    last = search(session, page=24, page_size=10)
    assert "next" not in links(last)


def test_page_past_the_end_is_empty(session):
    response = search(session, page=50, page_size=100)
    assert response.status_code == 200
    collection = response.json()["collection"]
    assert collection["items"] == []
    assert collection["metadata"]["total_hits"] == 240
    assert links(response).keys() == {"prev"}


def test_no_links_key_when_single_page(session):
    response = search(session, page_size=500)
    assert len(ids(response)) == 240
    assert "links" not in response.json()["collection"]


@pytest.mark.parametrize("page", [PAGE_CAP + 1, 500])
def test_page_cap_applies_even_to_small_catalogs(session, page):
    response = search(session, page=page, page_size=1)
    assert response.status_code == 400
    assert response.json() == {"reason": PAGE_CAP_REASON}


def test_catalog_size_override_reaches_the_page_cap():
    sim = NasaImagesSimulator(seed=0, catalog_sizes={"Moon": 12_000})
    session = mounted(sim)
    last = search(session, page=PAGE_CAP, page_size=100)
    assert last.status_code == 200
    assert last.json()["collection"]["metadata"]["total_hits"] == 12_000
    assert len(ids(last)) == 100
    assert "next" in links(last)  # more hits exist, but...
    assert search(session, page=PAGE_CAP + 1, page_size=100).json() == {"reason": PAGE_CAP_REASON}
    # The override only extends the catalog: its head is the default catalog.
    assert ids(search(session, page=2)) == moon_ids()[100:200]


def test_default_catalog_size_applies_to_every_query_not_overridden():
    sim = NasaImagesSimulator(seed=0, default_catalog_size=2_000, catalog_sizes={"mars": 7})
    assert sim.size_of("moon") == sim.size_of("Apollo  11") == 2_000
    assert sim.size_of("MARS") == 7
    with pytest.raises(ValueError, match="default_catalog_size"):
        NasaImagesSimulator(default_catalog_size=-1)


def test_duplicates_across_pages(session):
    page1, page2 = ids(search(session, page=1)), ids(search(session, page=2))
    assert page1[-1] == page2[0]
    full = catalog(0, "moon")
    assert full[100] == full[99] and full[200] == full[199]
    unique = {item["data"][0]["nasa_id"] for item in full}
    assert len(unique) == len(full) - 2


def test_missing_fields_and_awkward_ids():
    full = catalog(0, "moon")
    no_description = [i for i, e in enumerate(full) if "description" not in e["data"][0]]
    no_keywords = [i for i, e in enumerate(full) if "keywords" not in e["data"][0]]
    no_links = [i for i, e in enumerate(full) if "links" not in e]
    assert no_description and all(i % 7 == 2 or i % 100 == 0 for i in no_description)
    assert no_keywords and all(i % 9 == 4 or i % 100 == 0 for i in no_keywords)
    assert no_links and all(i % 11 == 4 or i % 100 == 0 for i in no_links)
    assert 2 in no_description and 4 in no_keywords and 4 in no_links
    assert " " in full[3]["data"][0]["nasa_id"]
    assert {"~", "'"} & set(full[5]["data"][0]["nasa_id"])
    quoted = quote(full[3]["data"][0]["nasa_id"], safe="")
    assert " " not in full[3]["href"] and quoted in full[3]["href"]


def test_catalog_determinism():
    assert catalog(0, "moon") == catalog(0, "Moon")
    assert moon_ids(0) != moon_ids(1)
    assert catalog(0, "mars") != catalog(0, "venus")
    other = NasaImagesSimulator(seed=0)
    assert ids(search(mounted(other))) == moon_ids()[:100]


def test_ids_unique_in_a_big_catalog():
    big = catalog(3, "galaxy", size=12_000)
    unique = {item["data"][0]["nasa_id"] for item in big}
    assert len(unique) == 12_000 - 119  # every 100th entry repeats the one before it


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"page": "abc"}, "page"),
        ({"page": "0"}, "page"),
        ({"page": "-3"}, "page"),
        ({"page_size": "x"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
    ],
)
def test_bad_paging_parameters(session, params, name):
    response = search(session, **params)
    assert response.status_code == 400
    assert f"'{name}'" in response.json()["reason"]


@pytest.mark.parametrize("q", [None, "", "   "])
def test_missing_q(session, q):
    response = search(session, q=q)
    assert response.status_code == 400
    assert response.json() == {"reason": "Expected 'q' text search parameter or other keywords."}


@pytest.mark.parametrize("media_type", ["video", "audio,video"])
def test_other_media_types_are_empty(session, media_type):
    response = search(session, media_type=media_type)
    assert response.status_code == 200
    collection = response.json()["collection"]
    assert collection["items"] == [] and collection["metadata"]["total_hits"] == 0
    assert "links" not in collection
    assert search(session, media_type="video,image").json()["collection"]["metadata"] == {
        "total_hits": 240
    }


def test_unknown_paths(session):
    response = session.get(f"{API_BASE_URL}/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"reason": "Not found"}
    response = session.get(f"{ASSETS_BASE_URL}/video/x/x~orig.mp4")
    assert response.status_code == 404 and response.content == NO_SUCH_KEY_BODY


# --------------------------------------------------------------------------- assets


def test_asset_manifest(session):
    nasa_id = next(i for i in moon_ids() if asset_renditions(i) == RENDITIONS)
    response = session.get(f"{API_BASE_URL}/asset/{quote(nasa_id, safe='')}")
    assert response.status_code == 200
    collection = response.json()["collection"]
    assert collection["version"] == "1.0"
    assert collection["href"] == f"http://images-api.nasa.gov/asset/{nasa_id}"
    base = f"{ASSETS_BASE_URL}/image/{nasa_id}"
    assert collection["items"] == [
        *({"href": f"{base}/{nasa_id}~{r}.png"} for r in RENDITIONS),
        {"href": f"{base}/metadata.json"},
    ]


@pytest.mark.parametrize("missing", ["orig", "large"])
def test_manifest_omits_some_renditions(session, missing):
    nasa_id = next(i for i in moon_ids() if missing not in asset_renditions(i))
    hrefs = [
        item["href"]
        for item in session.get(f"{API_BASE_URL}/asset/{quote(nasa_id, safe='')}").json()[
            "collection"
        ]["items"]
    ]
    assert not any(h.endswith(f"~{missing}.png") for h in hrefs)
    assert any(h.endswith("~medium.png") for h in hrefs)
    response = session.get(image_url(nasa_id, missing))
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/xml"
    assert response.content == NO_SUCH_KEY_BODY
    assert session.get(image_url(nasa_id, "medium")).status_code == 200


def test_some_moon_ids_lack_orig_or_large():
    renditions = [asset_renditions(i) for i in moon_ids()]
    assert sum("orig" not in r for r in renditions) > 0
    assert sum("large" not in r for r in renditions) > 0
    assert all({"medium", "small", "thumb"} <= set(r) for r in renditions)


def test_fresh_simulator_serves_ids_from_another_instance():
    found = ids(search(mounted(NasaImagesSimulator(seed=4)), page_size=10))
    fresh = NasaImagesSimulator(seed=4)
    session = mounted(fresh)
    for nasa_id in found:
        manifest = session.get(f"{API_BASE_URL}/asset/{quote(nasa_id, safe='')}")
        assert manifest.status_code == 200
        first = manifest.json()["collection"]["items"][0]["href"]
        image = session.get(first)
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    assert fresh.download_calls == len(found) and fresh.api_calls == len(found)


@pytest.mark.parametrize("index", [3, 5])
def test_awkward_ids_round_trip(session, index):
    nasa_id = moon_ids()[index]
    manifest = session.get(f"{API_BASE_URL}/asset/{quote(nasa_id, safe='')}")
    assert manifest.status_code == 200
    hrefs = [item["href"] for item in manifest.json()["collection"]["items"]]
    thumb = next(h for h in hrefs if h.endswith("~thumb.png"))
    assert thumb == image_url(nasa_id, "thumb")
    response = session.get(thumb)
    assert response.status_code == 200
    assert response.content == png_bytes(*RENDITION_SIZES["thumb"], key=nasa_id, seed=0)


@pytest.mark.parametrize("nasa_id", ["unknown-id", "PIA_UNKNOWN"])
def test_unknown_asset(session, nasa_id):
    response = session.get(f"{API_BASE_URL}/asset/{nasa_id}")
    assert response.status_code == 404
    assert response.json() == {"reason": f"No asset found for nasa_id {nasa_id}"}
    assert session.get(image_url(nasa_id, "thumb")).status_code == 404


@pytest.mark.parametrize("rendition", RENDITIONS)
def test_image_is_a_valid_png(session, rendition):
    nasa_id = next(i for i in moon_ids() if asset_renditions(i) == RENDITIONS)
    response = session.get(image_url(nasa_id, rendition))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    chunks = png_chunks(response.content)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and kinds.count(b"IDAT") == 1
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height) == RENDITION_SIZES[rendition]
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(dict(chunks)[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    assert dict(chunks)[b"tEXt"] == b"Comment\x00" + nasa_id.encode()


def test_png_bytes_determinism():
    a = png_bytes(640, 480, "PIA00001")
    assert a == png_bytes(640, 480, "PIA00001")
    assert a != png_bytes(640, 480, "PIA00002")
    assert png_bytes(100, 75, "k", seed=1) == png_bytes(100, 75, "k", seed=1)
    chunks = dict(png_chunks(png_bytes(7, 3, "Ærø ∑")))
    assert chunks[b"iTXt"].endswith("Ærø ∑".encode())
    assert len(zlib.decompress(chunks[b"IDAT"])) == 3 * (1 + 21)
    with pytest.raises(ValueError):
        png_bytes(0, 10, "x")


def test_metadata_and_collection_json(session):
    nasa_id = moon_ids()[0]
    base = f"{ASSETS_BASE_URL}/image/{nasa_id}"
    metadata = session.get(f"{base}/metadata.json")
    assert metadata.status_code == 200
    body = metadata.json()
    assert body["AVAIL:NASAID"] == nasa_id and body["File:FileType"] == "PNG"
    files = session.get(f"{base}/collection.json").json()
    assert files[-1] == f"http://images-assets.nasa.gov/image/{nasa_id}/metadata.json"


def test_failing_ids_answer_500_for_images(session):
    bad, good = moon_ids()[0], moon_ids()[1]
    sim = NasaImagesSimulator(seed=0, failing_ids=[bad])
    failing = mounted(sim)
    for rendition in RENDITIONS:
        assert failing.get(image_url(bad, rendition)).status_code == 500
    assert failing.get(image_url(good, "thumb")).status_code == 200
    # The manifest itself still answers: only the files fail.
    assert failing.get(f"{API_BASE_URL}/asset/{bad}").status_code == 200


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_sliding_window():
    clock = FakeClock()
    sim = NasaImagesSimulator(seed=0, requests_per_hour=5, clock=clock)
    session = mounted(sim)
    remaining = []
    for _ in range(5):
        response = search(session, page_size=5)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        clock.now += 10
    assert remaining == [4, 3, 2, 1, 0]
    refused = search(session, page_size=5)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": {
            "code": "OVER_RATE_LIMIT",
            "message": "You have exceeded your rate limit. Try again later or contact us at "
            "https://api.nasa.gov:443/contact/ for assistance",
        }
    }
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert session.get(f"{API_BASE_URL}/asset/PIA00001").status_code == 429
    # Downloads are not rate limited and do not count.
    nasa_id = moon_ids()[0]
    for _ in range(10):
        assert session.get(image_url(nasa_id, "thumb")).status_code == 200
    assert "X-RateLimit-Remaining" not in session.get(image_url(nasa_id, "small")).headers
    # The first request leaves the window 3,600 s after it was made.
    clock.now = 1_000.0 + 3_600
    again = search(session, page_size=5)
    assert again.status_code == 200
    assert again.headers["X-RateLimit-Remaining"] == "0"
    assert search(session, page_size=5).status_code == 429
    clock.now += 3_600
    assert search(session, page_size=5).headers["X-RateLimit-Remaining"] == "4"
    assert sim.api_calls == 10
    assert sim.download_calls == 11
    assert sim.calls == 21


def test_every_api_response_carries_rate_limit_headers(session, sim):
    for response in (
        search(session),
        search(session, page="x"),
        session.get(f"{API_BASE_URL}/asset/unknown"),
        session.get(f"{API_BASE_URL}/nope"),
    ):
        assert response.headers["X-RateLimit-Limit"] == str(DEFAULT_REQUESTS_PER_HOUR)
    assert response.headers["X-RateLimit-Remaining"] == str(DEFAULT_REQUESTS_PER_HOUR - 4)
    assert sim.api_calls == 4 and sim.download_calls == 0


def test_answer_without_a_session():
    sim = NasaImagesSimulator(seed=0)
    request = requests.Request("GET", SEARCH, params={"q": "moon", "page_size": 3}).prepare()
    status, body, content_type = sim.answer(request)
    assert status == 200 and content_type is None
    assert len(json.loads(json.dumps(body))["collection"]["items"]) == 3


def test_constructor_validation():
    with pytest.raises(ValueError):
        NasaImagesSimulator(requests_per_hour=0)
    with pytest.raises(ValueError):
        NasaImagesSimulator(catalog_sizes={"moon": -1})
