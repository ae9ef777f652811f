"""Pure rules of the NASA Image Library pipeline: parsing, dedupe, sampling, renditions."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from nasa_assets.search import (
    CONTENT_TYPES,
    RENDITIONS,
    SEARCH_SCHEMA,
    PayloadError,
    choose_rendition,
    dedupe,
    image_extension,
    metadata_document,
    parse_date,
    parse_keywords,
    parse_search_page,
    rendition_of,
    rendition_preference,
    sample,
    sample_bucket,
    search_frame,
    sniff_extension,
)

ASSETS = "https://images-assets.nasa.gov/image"


def item(nasa_id: str | None = "PIA12345", **data) -> dict:
    """One ``/search`` item shaped like the API's, with every optional field present."""
    fields = {
        "nasa_id": nasa_id,
        "title": "Full Moon",
        "description": "The Moon seen from Apollo 11.",
        "date_created": "1969-07-20T00:00:00Z",
        "center": "JSC",
        "keywords": ["Moon", "Apollo"],
        "media_type": "image",
        **data,
    }
    if nasa_id is None:
        del fields["nasa_id"]
    return {
        "href": f"https://images-assets.nasa.gov/image/{nasa_id}/collection.json",
        "data": [fields],
        "links": [
            {"href": f"{ASSETS}/{nasa_id}/{nasa_id}~thumb.jpg", "rel": "preview", "render": "image"}
        ],
    }


def page(items: list, *, next_link: bool = False, total_hits: object = 240) -> dict:
    links = [{"rel": "next", "prompt": "Next", "href": "http://images-api.nasa.gov/search?page=2"}]
    collection: dict = {"version": "1.0", "items": items, "metadata": {"total_hits": total_hits}}
    if next_link:
        collection["links"] = links
    return {"collection": collection}


def manifest(*names: str, nasa_id: str = "PIA12345") -> dict:
    return {"collection": {"items": [{"href": f"{ASSETS}/{nasa_id}/{n}"} for n in names]}}


def row(nasa_id: str, rank: int = 1) -> dict:
    return {"nasa_id": nasa_id, "rank": rank}


# --------------------------------------------------------------------------- parsing


def test_a_complete_item_becomes_one_row_with_every_field():
    """Every documented field lands in its column; preview and manifest hrefs are kept."""
    parsed = parse_search_page(page([item()], next_link=True), "moon")
    assert parsed.rows == [
        {
            "query": "moon",
            "nasa_id": "PIA12345",
            "title": "Full Moon",
            "description": "The Moon seen from Apollo 11.",
            "date_created": datetime(1969, 7, 20, tzinfo=UTC),
            "center": "JSC",
            "keywords": ["Moon", "Apollo"],
            "image_href": f"{ASSETS}/PIA12345/PIA12345~thumb.jpg",
            "manifest_href": "https://images-assets.nasa.gov/image/PIA12345/collection.json",
            "rank": 1,
        }
    ]
    assert parsed.total_hits == 240
    assert parsed.has_next is True
    assert parsed.skipped == []


def test_missing_optional_fields_become_nulls_and_empty_lists():
    """No description / keywords / title / center / previews / href: nulls, not errors."""
    bare = {"data": [{"nasa_id": "as11-40-5874"}]}
    blank = item("PIA2", description="   ", keywords=None)
    blank["links"] = []
    only_captions = item("PIA3")
    only_captions["links"] = [{"rel": "captions", "href": "https://x/cap.srt"}]
    rows = parse_search_page(page([bare, blank, only_captions]), "moon").rows
    assert rows[0] | {"rank": 0} == {
        "query": "moon",
        "nasa_id": "as11-40-5874",
        "title": None,
        "description": None,
        "date_created": None,
        "center": None,
        "keywords": [],
        "image_href": None,
        "manifest_href": None,
        "rank": 0,
    }
    assert rows[1]["description"] is None
    assert rows[1]["keywords"] == []
    assert rows[1]["image_href"] is None
    assert rows[2]["image_href"] is None


def test_keywords_given_as_one_string_are_split_on_commas_and_semicolons():
    """``"Moon; Apollo, Earth"`` -> three keywords, stripped, empty pieces dropped."""
    parsed = parse_search_page(page([item(keywords="Moon; Apollo, Earth")]), "moon")
    assert parsed.rows[0]["keywords"] == ["Moon", "Apollo", "Earth"]
    assert parse_keywords("Moon;; ,Earth ,") == ["Moon", "Earth"]
    assert parse_keywords([" Moon ", "", None, 1969]) == ["Moon", "1969"]
    assert parse_keywords(None) == []


def test_items_without_data_or_nasa_id_are_skipped_and_listed_with_their_rank():
    """No ``data``, empty ``data``, no/blank ``nasa_id`` or a non-object item: skipped, listed;
    the ranks of the kept rows still count the skipped positions."""
    items = [
        item("A"),
        {"href": "x", "links": []},  # no data
        {"data": []},
        item(None),
        item("   "),
        "not an object",
        {"data": ["not an object"]},
        item("B"),
    ]
    parsed = parse_search_page(page(items), "moon", first_rank=101)
    assert [(r["nasa_id"], r["rank"]) for r in parsed.rows] == [("A", 101), ("B", 108)]
    assert parsed.skipped == [f"item {n}: no data[0].nasa_id" for n in range(102, 108)]


def test_nasa_id_and_text_fields_are_stripped():
    """Surrounding whitespace is not part of an id (it would make a different key)."""
    parsed = parse_search_page(page([item("  PIA9 \n", title="  Moon  ")]), "moon")
    assert parsed.rows[0]["nasa_id"] == "PIA9"
    assert parsed.rows[0]["title"] == "Moon"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1969-07-20T20:17:40Z", datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)),
        ("1969-07-20T20:17:40", datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)),
        ("1969-07-20", datetime(1969, 7, 20, tzinfo=UTC)),
        ("1969-07-20T22:17:40+02:00", datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)),
        ("2015-03-01T10:00:00.123Z", datetime(2015, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("20 July 1969", None),
        ("1969-13-40T00:00:00Z", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_dates_are_utc_datetimes_or_none(raw, expected):
    """ISO 8601 (with ``Z``, an offset or naive-as-UTC) -> aware UTC datetime; anything else
    -> None rather than an error."""
    parsed = parse_date(raw)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)
        assert parsed.tzinfo is UTC


def test_a_bad_date_in_an_item_is_null_not_a_failure():
    """One unparseable ``date_created`` leaves the row in, with a null date."""
    parsed = parse_search_page(page([item(date_created="sometime in 1969")]), "moon")
    assert parsed.rows[0]["date_created"] is None


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        (None, "'collection'"),
        ([], "'collection'"),
        ("<html>", "'collection'"),
        ({}, "'collection'"),
        ({"collection": []}, "'collection'"),
        ({"collection": {}}, "collection.items"),
        ({"collection": {"items": {"a": 1}}}, "collection.items"),
        ({"collection": {"items": None}}, "collection.items"),
    ],
)
def test_a_payload_not_in_the_documented_shape_raises_payload_error_naming_it(payload, names):
    """Not the documented shape -> PayloadError (a ValueError) saying which part is wrong."""
    with pytest.raises(PayloadError, match="search page") as caught:
        parse_search_page(payload, "moon")
    assert names in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_has_next_needs_a_next_link_and_items():
    """``rel: next`` means more pages; an empty page ends the search even with a next link."""
    assert parse_search_page(page([item()], next_link=True), "q").has_next is True
    assert parse_search_page(page([item()]), "q").has_next is False
    assert parse_search_page(page([], next_link=True), "q").has_next is False
    prev_only = page([item()])
    prev_only["collection"]["links"] = [{"rel": "prev", "href": "x"}, "junk"]
    assert parse_search_page(prev_only, "q").has_next is False


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [({"total_hits": 240}, 240), ({"total_hits": 12.0}, 12), ({}, None), ("x", None), (None, None)],
)
def test_total_hits_is_an_int_or_none(metadata, expected):
    """``collection.metadata.total_hits`` when it is a number; None when absent or odd."""
    payload = {"collection": {"items": [], "metadata": metadata}}
    assert parse_search_page(payload, "q").total_hits == expected


# --------------------------------------------------------------------------- dedupe


def test_duplicates_across_pages_keep_the_first_occurrence_and_its_rank():
    """The API repeats items at page boundaries: the first copy (and its rank) wins."""
    first = parse_search_page(page([item("A"), item("B"), item("C")], next_link=True), "q")
    second = parse_search_page(
        page([item("C", title="later copy"), item("D"), item("A")]), "q", first_rank=4
    )
    kept, dropped = dedupe([*first.rows, *second.rows])
    assert [(r["nasa_id"], r["rank"]) for r in kept] == [("A", 1), ("B", 2), ("C", 3), ("D", 5)]
    assert kept[2]["title"] == "Full Moon"
    assert dropped == 2


def test_dedupe_of_nothing_and_of_unique_rows():
    """No rows -> nothing dropped; unique rows pass through in order."""
    assert dedupe([]) == ([], 0)
    rows = [row("B"), row("A")]
    assert dedupe(iter(rows)) == (rows, 0)


# --------------------------------------------------------------------------- sampling


def test_factor_one_keeps_every_row_as_a_new_list():
    """Factor 1 is no sampling at all (and does not hand back the caller's list)."""
    rows = [row(f"id-{i}") for i in range(50)]
    kept = sample(rows, 1)
    assert kept == rows
    assert kept is not rows


@pytest.mark.parametrize(("factor", "low", "high"), [(10, 0.08, 0.12), (2, 0.47, 0.53)])
def test_factor_n_keeps_about_one_row_in_n(factor, low, high):
    """On 10,000 synthetic ids the kept share is close to 1/N."""
    rows = [row(f"PIA{i:05d}") for i in range(10_000)]
    share = len(sample(rows, factor)) / len(rows)
    assert low <= share <= high


def test_sampling_is_deterministic_and_stable_when_rows_shift():
    """Same input, same output; a kept row stays kept when rows are added or reordered, so
    the sample does not churn as search results grow (unlike "every Nth row")."""
    rows = [row(f"as11-40-{i}") for i in range(2_000)]
    kept = {r["nasa_id"] for r in sample(rows, 10)}
    assert {r["nasa_id"] for r in sample(rows, 10)} == kept
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    grown = [row(f"new-{i}") for i in range(500)] + shuffled
    kept_after = {r["nasa_id"] for r in sample(grown, 10)}
    assert kept <= kept_after
    assert {i for i in kept_after if i.startswith("as11")} == kept


def test_sample_keeps_input_order():
    """The sample is a sub-sequence of the input (ranks stay ordered)."""
    rows = [row(f"id-{i}", rank=i) for i in range(1_000)]
    ranks = [r["rank"] for r in sample(rows, 5)]
    assert ranks == sorted(ranks)


def test_sample_bucket_is_sha256_based_not_pythons_salted_hash():
    """The bucket comes from sha256 of the id, so it is the same in every process."""
    digest = hashlib.sha256(b"PIA12345").digest()
    assert sample_bucket("PIA12345", 10) == int.from_bytes(digest[:8], "big") % 10
    assert all(0 <= sample_bucket(f"x{i}", 7) < 7 for i in range(200))


@pytest.mark.parametrize("factor", [0, -1, 1.5, "10", None, 2.0])
def test_a_factor_that_is_not_a_positive_integer_is_rejected(factor):
    """0, negatives, floats and strings -> ValueError naming the value."""
    with pytest.raises(ValueError, match="sampling factor"):
        sample([row("A")], factor)


# --------------------------------------------------------------------------- renditions


ALL = ("PIA12345~orig.jpg", "PIA12345~large.jpg", "PIA12345~medium.jpg",
       "PIA12345~small.jpg", "PIA12345~thumb.jpg", "metadata.json")  # fmt: skip


def test_the_preferred_rendition_is_chosen_when_published():
    """Default preference is ``large``; any listed rendition can be asked for."""
    assert choose_rendition(manifest(*ALL)) == ("large", f"{ASSETS}/PIA12345/PIA12345~large.jpg")
    for name in RENDITIONS:
        assert choose_rendition(manifest(*ALL), name)[0] == name


def test_missing_orig_falls_back_to_large():
    """Many items publish no ``orig``: the next size down is used."""
    names = [n for n in ALL if "~orig" not in n]
    assert choose_rendition(manifest(*names), "orig")[0] == "large"


def test_missing_large_falls_back_to_medium_then_small():
    """Smaller sizes first (closest below), before any larger one."""
    no_large = [n for n in ALL if "~large" not in n]
    assert choose_rendition(manifest(*no_large))[0] == "medium"
    no_large_medium = ["PIA12345~orig.jpg", "PIA12345~small.jpg", "PIA12345~thumb.jpg"]
    assert choose_rendition(manifest(*no_large_medium))[0] == "small"
    only_orig = ["PIA12345~orig.jpg", "metadata.json"]
    assert choose_rendition(manifest(*only_orig))[0] == "orig"


def test_thumb_preferred_falls_back_upwards():
    """``thumb`` is the smallest: when absent, the next larger size is taken."""
    assert choose_rendition(manifest(*ALL), "thumb")[0] == "thumb"
    assert choose_rendition(manifest("PIA1~medium.png", "PIA1~orig.png"), "thumb")[0] == "medium"


def test_rendition_preference_order():
    """Preferred, then smaller ones, then larger ones, closest first."""
    assert rendition_preference("large") == ["large", "medium", "small", "thumb", "orig"]
    assert rendition_preference("medium") == ["medium", "small", "thumb", "large", "orig"]
    assert rendition_preference("orig") == list(RENDITIONS)
    assert rendition_preference("thumb") == ["thumb", "small", "medium", "large", "orig"]


@pytest.mark.parametrize("name", ["huge", "Large", "", "metadata"])
def test_an_unknown_rendition_name_is_rejected(name):
    """Only orig/large/medium/small/thumb exist."""
    with pytest.raises(ValueError, match="rendition must be one of"):
        choose_rendition(manifest(*ALL), name)


@pytest.mark.parametrize(
    "names",
    [
        ("metadata.json",),
        ("metadata.json", "PIA12345~orig.mp4", "PIA12345~large.srt", "collection.json"),
        (),
    ],
)
def test_a_manifest_without_any_image_rendition_raises_payload_error(names):
    """Only metadata / non-image files -> PayloadError (there is nothing to download)."""
    with pytest.raises(PayloadError, match="no image rendition"):
        choose_rendition(manifest(*names))


@pytest.mark.parametrize("payload", [None, {"collection": {}}, {"collection": {"items": 3}}])
def test_a_malformed_manifest_raises_payload_error(payload):
    """Not ``collection.items[]`` -> PayloadError naming the manifest."""
    with pytest.raises(PayloadError, match="asset manifest"):
        choose_rendition(payload)


def test_manifest_items_without_href_are_ignored_and_the_first_copy_wins():
    """Items lacking ``href`` or not objects are skipped; a rendition listed twice keeps the
    first URL."""
    payload = {
        "collection": {
            "items": [
                {},
                "junk",
                {"href": None},
                {"href": f"{ASSETS}/A/A~large.jpg"},
                {"href": f"{ASSETS}/A/A~large.png"},
            ]
        }
    }
    assert choose_rendition(payload) == ("large", f"{ASSETS}/A/A~large.jpg")


def test_url_encoded_names_are_recognised():
    """``Moon%20Landing~large.jpg`` is the ``large`` JPEG of ``Moon Landing``; the href is
    returned as published (still encoded)."""
    href = f"{ASSETS}/Moon%20Landing/Moon%20Landing~large.jpg"
    assert rendition_of(href) == "large"
    assert image_extension(href) == ".jpg"
    assert choose_rendition({"collection": {"items": [{"href": href}]}}) == ("large", href)
    tilde = f"{ASSETS}/a%7Eb/a%7Eb~small.png"
    assert rendition_of(tilde) == "small"


@pytest.mark.parametrize(
    ("href", "rendition"),
    [
        (f"{ASSETS}/PIA1/PIA1~orig.tif", "orig"),
        (f"{ASSETS}/PIA1/PIA1~thumb.jpg?x=1#frag", "thumb"),
        (f"{ASSETS}/PIA1/metadata.json", None),
        (f"{ASSETS}/PIA1/PIA1~large", None),
        (f"{ASSETS}/PIA1~large.jpg/readme.txt", None),
        (f"{ASSETS}/PIA1/PIA1~huge.jpg", None),
    ],
)
def test_rendition_of(href, rendition):
    """The rendition is read from the file name only, never the folder or the query."""
    assert rendition_of(href) == rendition


@pytest.mark.parametrize(
    ("href", "extension"),
    [
        ("https://x/a~large.jpeg", ".jpg"),
        ("https://x/a~large.JPEG", ".jpg"),
        ("https://x/a~large.JPG", ".jpg"),
        ("https://x/a~orig.tiff", ".tif"),
        ("https://x/a~orig.tif", ".tif"),
        ("https://x/a~small.png?download=1", ".png"),
        ("https://x/a~small.gif", ".gif"),
        ("https://x/metadata.json", None),
        ("https://x/a~orig.mp4", None),
        ("https://x/noextension", None),
    ],
)
def test_image_extension_is_normalised(href, extension):
    """``.jpeg``/``.JPG`` -> ``.jpg``, ``.tiff`` -> ``.tif``; non-images -> None."""
    assert image_extension(href) == extension


def test_a_jpeg_rendition_is_chosen_and_its_extension_normalised():
    """A ``.jpeg`` rendition is an image like any other; its key extension is ``.jpg``."""
    rendition, href = choose_rendition(manifest("PIA1~large.jpeg", "metadata.json"))
    assert rendition == "large"
    assert image_extension(href) == ".jpg"


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("data", "extension"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ".png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ".jpg"),
        (b"\xff\xd8\xff\xe1Exif", ".jpg"),
        (b"GIF89a\x01\x00", ".gif"),
        (b"GIF87a\x01\x00", ".gif"),
        (b"II*\x00\x08\x00\x00\x00", ".tif"),
        (b"MM\x00*\x00\x00\x00\x08", ".tif"),
        (b"<!DOCTYPE html><html><body>Not Found</body></html>", None),
        (b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code></Error>', None),
        (b'{"reason": "nope"}', None),
        (b"\x89PN", None),
        (b"", None),
    ],
)
def test_sniff_extension_reads_the_magic_bytes(data, extension):
    """What was really downloaded: PNG/JPEG/GIF/TIFF by magic; HTML/XML/JSON/truncated -> None."""
    assert sniff_extension(data) == extension


def test_every_sniffed_type_has_a_content_type():
    """Each extension ``sniff_extension`` can return maps to a MIME type for the upload."""
    assert CONTENT_TYPES == {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".gif": "image/gif",
        ".tif": "image/tiff",
    }


# --------------------------------------------------------------------------- frame & document


def test_an_empty_search_frame_has_the_warehouse_schema():
    """No results still yields a typed, zero-row table (the warehouse write needs the schema)."""
    frame = search_frame([])
    assert frame.height == 0
    assert frame.schema == pl.Schema(SEARCH_SCHEMA)
    assert frame.columns == [
        "query", "nasa_id", "title", "description", "date_created", "center",
        "keywords", "image_href", "manifest_href", "rank",
    ]  # fmt: skip


def test_parsed_rows_fit_the_frame_schema():
    """Rows straight from the parser (nulls, empty keyword lists, UTC dates) load as typed."""
    bare = {"data": [{"nasa_id": "B"}]}
    rows = parse_search_page(page([item("A", keywords="Moon; Apollo"), bare]), "moon").rows
    frame = search_frame(rows)
    assert frame.schema == pl.Schema(SEARCH_SCHEMA)
    assert frame["nasa_id"].to_list() == ["A", "B"]
    assert frame["keywords"].to_list() == [["Moon", "Apollo"], []]
    assert frame["date_created"].to_list() == [datetime(1969, 7, 20, tzinfo=UTC), None]
    assert frame["rank"].to_list() == [1, 2]
    assert frame["description"].null_count() == 1


def test_metadata_document_records_the_search_fields_and_the_exact_file():
    """Search fields, ISO date with ``Z``, rendition, source href, key, byte count, sha256."""
    search_row = parse_search_page(page([item("PIA12345")]), "moon").rows[0]
    data = b"\x89PNG\r\n\x1a\nrest"
    href = f"{ASSETS}/PIA12345/PIA12345~large.jpg"
    doc = metadata_document(search_row, "large", href, "nasa/moon/images/PIA12345.png", data)
    assert doc == {
        "query": "moon",
        "nasa_id": "PIA12345",
        "title": "Full Moon",
        "description": "The Moon seen from Apollo 11.",
        "date_created": "1969-07-20T00:00:00Z",
        "center": "JSC",
        "keywords": ["Moon", "Apollo"],
        "preview_href": f"{ASSETS}/PIA12345/PIA12345~thumb.jpg",
        "manifest_href": "https://images-assets.nasa.gov/image/PIA12345/collection.json",
        "rendition": "large",
        "image_href": href,
        "image_key": "nasa/moon/images/PIA12345.png",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert doc["keywords"] is not search_row["keywords"]


def test_metadata_document_with_missing_fields():
    """Only ``query`` and ``nasa_id`` are required: the rest become null / empty."""
    doc = metadata_document({"query": "q", "nasa_id": "X"}, "thumb", "h", "k", b"")
    assert doc["date_created"] is None
    assert doc["keywords"] == []
    assert doc["title"] is None and doc["preview_href"] is None
    assert doc["bytes"] == 0
    assert doc["sha256"] == hashlib.sha256(b"").hexdigest()


def test_metadata_document_date_is_utc_with_z():
    """A UTC datetime is written ``...Z``; sub-seconds are kept."""
    when = datetime(2015, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)
    doc = metadata_document(
        {"query": "q", "nasa_id": "X", "date_created": when}, "l", "h", "k", b"x"
    )
    assert doc["date_created"] == "2015-03-01T10:00:00.123000Z"
    assert parse_date(doc["date_created"]) == when


def test_metadata_document_date_from_another_zone_is_not_mislabelled():
    """A non-UTC aware datetime keeps its offset rather than being given a false ``Z``."""
    when = datetime(1969, 7, 20, 22, 0, tzinfo=timezone(timedelta(hours=2)))
    doc = metadata_document(
        {"query": "q", "nasa_id": "X", "date_created": when}, "l", "h", "k", b"x"
    )
    assert parse_date(doc["date_created"]) == when
