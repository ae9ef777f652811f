"""The NASA Image Library client and resource: against a local HTTP server (live mode) and the
in-process simulator (simulated mode)."""

from __future__ import annotations

import json
import logging
import pickle

import dagster as dg
import pytest
from werkzeug import Request, Response

from nasa_assets.client import (
    ASSETS_BASE_URL,
    PAGE_CAP,
    REQUESTS_PER_HOUR,
    NasaClientSpec,
    NasaImagesClient,
    NasaImagesResource,
    _https,
)
from nasa_assets.search import choose_rendition, sniff_extension
from resources.http import ApiError, ApiRateLimitError, ApiResponseError
from resources.settings import NASA_IMAGES_BASE_URL
from resources.source import SourceConfig

CAP_REASON = (
    "Maximum number of search results have been displayed. "
    "Please refine your search to narrow down your results."
)
MIB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("NASA_API_KEY", raising=False)


def spec(httpserver, **overrides) -> NasaClientSpec:
    base = httpserver.url_for("").rstrip("/")
    values = {
        "source": SourceConfig(mode="live"),
        "base_url": base,
        "assets_base_url": base,
        "max_attempts": 3,
        "timeout_s": 5.0,
        **overrides,
    }
    return NasaClientSpec(**values)


def live_client(httpserver, **overrides) -> NasaImagesClient:
    """A live client on the test server whose retries do not really sleep."""
    client = spec(httpserver, **overrides).build()
    client.api._sleep = lambda s: None
    client.assets._sleep = lambda s: None
    return client


def items(*ids: str) -> list[dict]:
    return [
        {
            "href": f"https://images-assets.nasa.gov/image/{i}/collection.json",
            "data": [{"nasa_id": i, "title": f"title of {i}", "media_type": "image"}],
            "links": [{"rel": "preview", "href": f"https://x/{i}~thumb.jpg"}],
        }
        for i in ids
    ]


def search_body(ids: list[str], *, next_page: int | None = None, total: int = 5) -> dict:
    collection: dict = {"version": "1.0", "items": items(*ids), "metadata": {"total_hits": total}}
    links = [{"rel": "prev", "prompt": "Previous", "href": "http://images-api.nasa.gov/search"}]
    if next_page is not None:
        links.append(
            {"rel": "next", "href": f"http://images-api.nasa.gov/search?q=moon&page={next_page}"}
        )
    collection["links"] = links
    return {"collection": collection}


def search_params(page: int, q: str = "moon", page_size: int = 100, **extra: str) -> dict:
    return {"q": q, "media_type": "image", "page": str(page), "page_size": str(page_size), **extra}


# --------------------------------------------------------------------------- search (live)


def test_search_follows_next_links_and_concatenates_pages(httpserver):
    """Page 1 and 2 say ``rel: next``, page 3 does not: three requests with ``q``,
    ``media_type=image``, ``page`` and ``page_size=100``, rows in order with global ranks."""
    bodies = [
        search_body(["A", "B"], next_page=2),
        search_body(["C", "D"], next_page=3),
        search_body(["E"]),
    ]
    for number, body in enumerate(bodies, start=1):
        httpserver.expect_ordered_request(
            "/search", method="GET", query_string=search_params(number)
        ).respond_with_json(body)
    seen: list[tuple[int, int]] = []
    result = live_client(httpserver).search(
        "moon", on_page=lambda n, p: seen.append((n, len(p.rows)))
    )
    httpserver.check_assertions()
    assert len(httpserver.log) == 3
    assert [r["nasa_id"] for r in result.rows] == ["A", "B", "C", "D", "E"]
    assert [r["rank"] for r in result.rows] == [1, 2, 101, 102, 201]
    assert {r["query"] for r in result.rows} == {"moon"}
    assert (result.query, result.pages, result.total_hits) == ("moon", 3, 5)
    assert (result.duplicates, result.skipped, result.end) == (0, [], "last page")
    assert seen == [(1, 2), (2, 2), (3, 1)]


def test_duplicates_across_pages_are_dropped_keeping_the_first(httpserver):
    """The API repeats the last item of a page first on the next: counted, not kept twice;
    items without a nasa_id are listed in ``skipped``."""
    page_2 = search_body(["B", "C"])
    page_2["collection"]["items"].append({"data": [{"title": "no id"}]})
    httpserver.expect_ordered_request(
        "/search", query_string=search_params(1, page_size=2)
    ).respond_with_json(search_body(["A", "B"], next_page=2))
    httpserver.expect_ordered_request(
        "/search", query_string=search_params(2, page_size=2)
    ).respond_with_json(page_2)
    result = live_client(httpserver, page_size=2).search("moon")
    assert [(r["nasa_id"], r["rank"]) for r in result.rows] == [("A", 1), ("B", 2), ("C", 4)]
    assert result.duplicates == 1
    assert result.skipped == ["item 5: no data[0].nasa_id"]


def test_the_search_stops_at_page_100_itself(httpserver):
    """Every page says ``rel: next``: the client reads pages 1-100 and never asks for page 101
    (which the API refuses with HTTP 400); rows already fetched are kept."""
    pages: list[int] = []

    def answer(request: Request) -> Response:
        page = int(request.args["page"])
        pages.append(page)
        if page > PAGE_CAP:
            return Response(json.dumps({"reason": CAP_REASON}), 400, mimetype="application/json")
        body = search_body([f"P{page}"], next_page=page + 1, total=20_000)
        return Response(json.dumps(body), mimetype="application/json")

    httpserver.expect_request("/search").respond_with_handler(answer)
    client = live_client(httpserver, page_size=1)
    result = client.search("moon")
    assert pages == list(range(1, PAGE_CAP + 1))
    assert [r["nasa_id"] for r in result.rows] == [f"P{p}" for p in range(1, PAGE_CAP + 1)]
    assert result.pages == PAGE_CAP
    assert result.total_hits == 20_000
    assert result.end == "page cap: the API serves at most 100 pages (20000 hits, 100 read)"
    assert client.api.stats.retries == 0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda r: r.respond_with_json({"reason": CAP_REASON}, 400), id="json"),
        pytest.param(lambda r: r.respond_with_data("Bad Request", 400), id="text"),
    ],
)
def test_a_400_before_page_100_is_an_error_not_the_cap(httpserver, answer):
    """Below the cap a 400 is a real error (a bad parameter, an API change): the search fails
    naming it instead of ending as if it were complete."""
    httpserver.expect_ordered_request("/search").respond_with_json(search_body(["A"], next_page=2))
    answer(httpserver.expect_ordered_request("/search"))
    client = live_client(httpserver)
    with pytest.raises(ApiError) as info:
        client.search("moon")
    assert info.value.status == 400
    assert str(info.value).startswith("NASA Image Library answered HTTP 400 (GET http://")
    assert "/search): " in str(info.value)
    assert client.api.stats.requests == 2


def test_a_400_on_page_1_is_an_error(httpserver):
    """On the first page a 400 means a bad request, not the cap: ApiError with status 400."""
    httpserver.expect_request("/search").respond_with_json(
        {"reason": "Expected 'q' text search parameter or other keywords."}, status=400
    )
    with pytest.raises(ApiError) as caught:
        live_client(httpserver).search("moon")
    assert caught.value.status == 400
    assert "Expected 'q'" in str(caught.value)
    assert len(httpserver.log) == 1


def test_429_then_503_then_success_is_retried(httpserver):
    """Throttling and outages are retried within ``max_attempts``; the stats count them."""
    httpserver.expect_ordered_request("/search").respond_with_json(
        {"error": {"code": "OVER_RATE_LIMIT", "message": "slow down"}}, status=429
    )
    httpserver.expect_ordered_request("/search").respond_with_data("unavailable", status=503)
    httpserver.expect_ordered_request("/search", query_string=search_params(1)).respond_with_json(
        search_body(["A"])
    )
    client = live_client(httpserver)
    result = client.search("moon")
    httpserver.check_assertions()
    assert [r["nasa_id"] for r in result.rows] == ["A"]
    assert client.api.stats.retries == 2
    assert client.api.stats.retries_by_reason == {"HTTP 429": 1, "HTTP 503": 1}
    assert client.api.stats.requests == 3


def test_429_on_every_attempt_raises_a_rate_limit_error(httpserver):
    """Retries are bounded by ``max_attempts``; the final error says it was throttling."""
    httpserver.expect_request("/search").respond_with_json(
        {"error": {"message": "slow"}}, status=429
    )
    with pytest.raises(ApiRateLimitError, match="3 attempts"):
        live_client(httpserver).search("moon")
    assert len(httpserver.log) == 3


def test_a_malformed_search_body_is_a_payload_error(httpserver):
    """JSON that is not ``collection.items[]`` fails loudly (ValueError), not as zero rows."""
    httpserver.expect_request("/search").respond_with_json({"items": []})
    with pytest.raises(ValueError, match="collection"):
        live_client(httpserver).search("moon")


def test_a_page_of_skipped_items_does_not_end_the_search(httpserver):
    """A page with items but none usable (no nasa_id) and a next link is not the last page."""
    bad_page = search_body([], next_page=2)
    bad_page["collection"]["items"] = [{"data": [{"title": "no id"}]}] * 2
    httpserver.expect_ordered_request("/search").respond_with_json(bad_page)
    httpserver.expect_ordered_request("/search").respond_with_json(search_body(["A"]))
    result = live_client(httpserver, page_size=2).search("moon")
    assert [r["nasa_id"] for r in result.rows] == ["A"]


@pytest.mark.parametrize("query", ["", "   "])
def test_an_empty_query_is_rejected_before_any_request(httpserver, query):
    """No request for an empty search."""
    with pytest.raises(ValueError, match="empty"):
        live_client(httpserver).search(query)
    assert httpserver.log == []


@pytest.mark.parametrize("page_size", [0, 101, -1])
def test_page_size_is_bounded_by_the_api_maximum(httpserver, page_size):
    """``page_size`` must be 1..100 (the API's maximum)."""
    with pytest.raises(ValueError, match="page_size"):
        spec(httpserver, page_size=page_size).build()


# --------------------------------------------------------------------------- assets (live)


def test_asset_manifest_percent_encodes_the_id_into_one_path_segment(httpserver):
    """An id with a space and a slash is sent as ``/asset/a%20b%2Fc``, never as two segments."""
    body = {"collection": {"items": [{"href": "https://x/a b/a b~large.jpg"}]}}
    httpserver.expect_request("/asset/Moon Landing/1969").respond_with_json(body)
    assert live_client(httpserver).asset_manifest("Moon Landing/1969") == body
    request, _ = httpserver.log[0]
    assert request.environ["RAW_URI"] == "/asset/Moon%20Landing%2F1969"


def test_asset_manifest_encodes_apostrophes(httpserver):
    """``'`` is encoded; ``~`` is unreserved (RFC 3986) and the server decodes it back."""
    httpserver.expect_request("/asset/Aldrin's~5").respond_with_json({"collection": {"items": []}})
    assert live_client(httpserver).asset_manifest("Aldrin's~5") == {"collection": {"items": []}}
    request, _ = httpserver.log[0]
    assert request.environ["RAW_URI"] == "/asset/Aldrin%27s~5"


def test_download_returns_the_raw_bytes(httpserver):
    """Files come from the assets host as absolute URLs; other hosts/schemes are not rewritten."""
    httpserver.expect_request("/image/PIA1/PIA1~large.png").respond_with_data(
        PNG, content_type="image/png"
    )
    client = live_client(httpserver)
    data = client.download(httpserver.url_for("/image/PIA1/PIA1~large.png"))
    assert data == PNG
    assert sniff_extension(data) == ".png"


def test_a_download_over_the_cap_fails_naming_the_setting(httpserver):
    """A huge TIFF is refused at the cap (``NASA_MAX_DOWNLOAD_MB``), not read into memory."""
    httpserver.expect_request("/image/BIG/BIG~orig.tif").respond_with_data(
        b"II*\x00" + bytes(2 * MIB), content_type="image/tiff"
    )
    client = live_client(httpserver, max_download_bytes=MIB)
    with pytest.raises(ApiResponseError) as info:
        client.download(httpserver.url_for("/image/BIG/BIG~orig.tif"))
    assert "answered more than the 1 MiB cap (Content-Length: 2 MiB, " in str(info.value)
    assert str(info.value).endswith("; raise NASA_MAX_DOWNLOAD_MB to allow more")
    assert len(httpserver.log) == 1  # not retried: it would be as large again


def test_download_upgrades_nasa_http_links_to_https(httpserver, monkeypatch):
    """Manifests write ``http://images-assets.nasa.gov``; the client fetches over https."""
    client = live_client(httpserver)
    fetched: list[str] = []
    monkeypatch.setattr(client.assets, "get_bytes", lambda url: fetched.append(url) or PNG)
    client.download("http://images-assets.nasa.gov/image/A/A~large.jpg")
    client.download("http://example.org/A~large.jpg")
    assert fetched == [
        "https://images-assets.nasa.gov/image/A/A~large.jpg",
        "http://example.org/A~large.jpg",
    ]


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        (
            "http://images-assets.nasa.gov/image/A%20B/A%20B~large.jpg?x=1#f",
            "https://images-assets.nasa.gov/image/A%20B/A%20B~large.jpg?x=1#f",
        ),
        ("http://images-api.nasa.gov/search?q=moon&page=2", "https://images-api.nasa.gov/search?q=moon&page=2"),
        ("http://IMAGES-ASSETS.NASA.GOV/image/A/A~thumb.jpg", "https://IMAGES-ASSETS.NASA.GOV/image/A/A~thumb.jpg"),
        ("https://images-assets.nasa.gov/image/A/A~large.jpg", "https://images-assets.nasa.gov/image/A/A~large.jpg"),
        ("http://images-assets.nasa.gov:80/a.jpg", "https://images-assets.nasa.gov/a.jpg"),
        ("http://example.org/image.jpg", "http://example.org/image.jpg"),
        ("http://images-assets.nasa.gov.evil.example/x.jpg", "http://images-assets.nasa.gov.evil.example/x.jpg"),
        ("http://127.0.0.1:8080/x.jpg", "http://127.0.0.1:8080/x.jpg"),
        ("ftp://images-assets.nasa.gov/x.jpg", "ftp://images-assets.nasa.gov/x.jpg"),
    ],
)  # fmt: skip
def test_https_upgrades_only_nasa_hosts(href, expected):
    """Only ``http`` links to the two NASA hosts are upgraded; everything else is untouched."""
    assert _https(href) == expected


# --------------------------------------------------------------------------- the API key


def test_the_api_key_is_sent_as_a_parameter_and_never_shown(httpserver, caplog):
    """``api_key`` goes out as a query parameter; after three HTTP 500s the ApiError, its URL
    and the retry log lines do not contain it, even when the server echoes it back."""
    httpserver.expect_request(
        "/search", query_string=search_params(1, api_key="s3cret")
    ).respond_with_json({"error": {"message": "internal error for api_key=s3cret"}}, status=500)
    client = live_client(httpserver, api_key="s3cret")
    with caplog.at_level(logging.WARNING), pytest.raises(ApiError) as caught:
        client.search("moon")
    assert len(httpserver.log) == 3
    assert caught.value.status == 500
    assert "3 attempts" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in caught.value.message
    assert "s3cret" not in caught.value.url
    assert "s3cret" not in repr(caught.value)
    assert "internal error" in str(caught.value)
    assert caplog.records, "the retries should be logged"
    assert "s3cret" not in caplog.text


def test_the_api_key_is_sent_to_asset_manifests_too(httpserver):
    """Every API-host call carries the key."""
    httpserver.expect_request("/asset/PIA1", query_string={"api_key": "s3cret"}).respond_with_json(
        {"collection": {"items": []}}
    )
    live_client(httpserver, api_key="s3cret").asset_manifest("PIA1")
    httpserver.check_assertions()
    assert len(httpserver.log) == 1


def test_without_a_key_no_api_key_parameter_is_sent(httpserver):
    """No key configured -> no ``api_key`` parameter at all (exact query match)."""
    httpserver.expect_request("/search", query_string=search_params(1)).respond_with_json(
        search_body(["A"])
    )
    live_client(httpserver).search("moon")
    request, _ = httpserver.log[0]
    assert "api_key" not in request.args


# --------------------------------------------------------------------------- the spec


def test_share_divides_the_hourly_budget():
    """N parallel tasks each get 1/N of the budget, rounded down but never below 1."""
    base = NasaClientSpec(requests_per_hour=1000)
    assert base.share(4).requests_per_hour == 250
    assert base.share(3).requests_per_hour == 333
    assert base.share(1) == base
    assert base.share(0).requests_per_hour == 1000
    assert base.share(-2).requests_per_hour == 1000
    assert base.share(5000).requests_per_hour == 1
    assert NasaClientSpec(requests_per_hour=3).share(4).requests_per_hour == 1
    shared = base.share(4)
    assert shared.requests_per_hour * 4 <= base.requests_per_hour
    assert shared.source == base.source and shared.base_url == base.base_url


def test_the_spec_pickles_and_hides_the_key_from_repr():
    """Spark ships the spec to workers: it pickles round-trip; ``repr`` never shows the key."""
    original = NasaClientSpec(
        source=SourceConfig(mode="live", seed=7),
        base_url="https://api.example",
        api_key="s3cret",
        requests_per_hour=250,
    )
    copy = pickle.loads(pickle.dumps(original))
    assert copy == original
    assert copy.api_key == "s3cret"
    assert "s3cret" not in repr(original)
    assert "s3cret" not in str(original)


def test_spec_defaults():
    """Simulated mode, NASA's hosts and the documented 1,000 requests an hour."""
    default = NasaClientSpec()
    assert default.source.mode == "simulated"
    assert default.base_url == NASA_IMAGES_BASE_URL
    assert default.assets_base_url == ASSETS_BASE_URL
    assert default.requests_per_hour == REQUESTS_PER_HOUR == 1000
    assert default.api_key is None
    assert default.max_download_bytes == 64 * MIB


def test_an_unknown_source_mode_is_refused():
    """Only simulated and live exist."""
    with pytest.raises(ValueError, match="SOURCE_MODE must be simulated or live, got 'bogus'"):
        SourceConfig(mode="bogus")


# --------------------------------------------------------------------------- simulated mode


def test_simulated_search_of_moon_end_to_end():
    """No server: 240 simulated hits with 2 repeats across pages -> 238 distinct rows over 3
    pages, ending on the last page; some rows lack a description or a preview."""
    result = NasaClientSpec().build().search("moon")
    assert len(result.rows) == 238
    assert len({r["nasa_id"] for r in result.rows}) == 238
    assert result.duplicates == 2
    assert result.total_hits == 240
    assert result.pages == 3
    assert result.end == "last page"
    assert result.skipped == []
    assert any(r["description"] is None for r in result.rows)
    assert any(r["image_href"] is None for r in result.rows)
    assert any(r["keywords"] == [] for r in result.rows)
    assert all(r["date_created"] is not None for r in result.rows)


def test_simulated_manifest_and_download_of_an_awkward_id():
    """An id with an apostrophe and a tilde: manifest, rendition choice and a PNG download."""
    client = NasaClientSpec().build()
    rows = client.search("moon").rows
    awkward = next(r["nasa_id"] for r in rows if "'" in r["nasa_id"])
    rendition, href = choose_rendition(client.asset_manifest(awkward))
    assert rendition in ("large", "medium")
    assert sniff_extension(client.download(href)) == ".png"


def test_simulated_search_stops_at_the_page_cap():
    """12,000 hits: pages 1-100 are read and the search ends there, without asking for the
    page 101 the simulator (like the API) would refuse."""
    client = NasaClientSpec(simulator_hits=12_000).build()
    result = client.search("moon")
    assert result.pages == PAGE_CAP == 100
    assert result.end == "page cap: the API serves at most 100 pages (12000 hits, 100 read)"
    assert client.api.stats.requests == PAGE_CAP
    assert len(result.rows) + result.duplicates == PAGE_CAP * 100


# --------------------------------------------------------------------------- the resource


def test_resource_builds_a_spec_from_its_config():
    """Config values reach the spec; a blank key is no key; a padded key is stripped."""
    resource = NasaImagesResource(
        source=SourceConfig(mode="live", seed=4),
        base_url="https://api.example",
        api_key="  k3y  ",
        requests_per_hour=500,
        timeout_s=3.0,
        max_attempts=2,
        simulator_hits=50,
    )
    assert resource.spec() == NasaClientSpec(
        source=SourceConfig(mode="live", seed=4),
        base_url="https://api.example",
        api_key="k3y",
        requests_per_hour=500,
        timeout_s=3.0,
        max_attempts=2,
        simulator_hits=50,
    )
    assert resource.source.mode == "live"
    assert NasaImagesResource(api_key="   ").spec().api_key is None
    assert NasaImagesResource(max_download_mb=3).spec().max_download_bytes == 3 * MIB


def test_resource_client_in_simulated_mode_searches():
    """The default resource is simulated and needs no network."""
    client = NasaImagesResource(simulator_hits=30).client()
    result = client.search("mars")
    assert len(result.rows) == 30
    client.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"requests_per_hour": 0}, "requests_per_hour"),
        ({"requests_per_hour": -5}, "requests_per_hour"),
        ({"max_download_mb": 0}, "max_download_mb must be >= 1, got 0"),
    ],
)
def test_resource_rejects_bad_config_with_a_failure(config, message):
    """A wrong mode or a non-positive budget is a dg.Failure naming the setting."""
    with pytest.raises(dg.Failure, match=message):
        NasaImagesResource(**config).spec()
