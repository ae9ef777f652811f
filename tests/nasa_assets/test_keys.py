"""Object keys of the image library: safe segments, the key layout, reading a listing back."""

from __future__ import annotations

import hashlib
import re

import pytest

from nasa_assets.keys import (
    MAX_SEGMENT,
    image_key,
    metadata_key,
    query_folder,
    safe_key_component,
    stored_ids,
)

SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def assert_one_safe_segment(key: str) -> None:
    assert SEGMENT.fullmatch(key), key
    assert ".." not in key
    assert "/" not in key


@pytest.mark.parametrize(
    "value",
    ["PIA12345", "as11-40-5874", "iss042e123456", "GSFC_20171208_Archive_e001234", "KSC-69P-0.1"],
)
def test_safe_ids_are_kept_as_they_are(value):
    """Ids that are already safe stay readable: the key segment is the id itself."""
    assert safe_key_component(value) == value


UNSAFE = [
    "a/b",
    "../../etc/passwd",
    "..",
    "a..b",
    "Moon Landing",
    "PIA123~large",
    "Buzz Aldrin's boot",
    "Lune \u00e9toile \U0001f315",
    "\u041b\u0443\u043d\u0430",
    ".hidden",
    "-leading-dash",
    "_leading_underscore",
    "trailing/",
    " PIA1",
    "PIA1\n",
    "tab\there",
    "a\\b",
    "%2F..%2F",
    "???",
    "/",
    "~",
    "A" * (MAX_SEGMENT + 1),
    "x" * 5000,
    "a b" * 200,
]


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_ids_become_one_safe_segment(value):
    """``/``, ``..``, spaces, ``~``, quotes, unicode, leading dots, control characters and
    overlong ids -> one segment ``[A-Za-z0-9][A-Za-z0-9._-]*`` without ``..`` or ``/``."""
    key = safe_key_component(value)
    assert_one_safe_segment(key)
    assert key != value
    assert len(key) <= MAX_SEGMENT + 9  # slug + "-" + 8 hex


def test_unsafe_ids_keep_a_readable_slug_and_a_hash_suffix():
    """The slug stays recognisable; the suffix is 8 hex digits of the original's sha256."""
    key = safe_key_component("Moon Landing")
    assert re.fullmatch(r"Moon_Landing-[0-9a-f]{8}", key)
    assert re.fullmatch(r"etc_passwd-[0-9a-f]{8}", safe_key_component("../../etc/passwd"))
    assert re.fullmatch(r"id-[0-9a-f]{8}", safe_key_component("???"))


def test_ids_that_slug_alike_get_different_keys():
    """``"a b"``, ``"a/b"``, ``"a_b"`` (and friends) never share a key."""
    values = ["a b", "a/b", "a_b", "a  b", "a\tb", "a~b", "a'b", "a b ", "A" * 300, "A" * 301]
    keys = [safe_key_component(v) for v in values]
    assert len(set(keys)) == len(values)
    assert safe_key_component("a_b") == "a_b"


def test_keys_are_deterministic():
    """The same id gives the same key every time (reruns find what earlier runs stored)."""
    for value in [*UNSAFE, "PIA12345"]:
        assert safe_key_component(value) == safe_key_component(value)
    assert (
        safe_key_component("Moon Landing")
        == "Moon_Landing-" + hashlib.sha256(b"Moon Landing").hexdigest()[:8]
    )


def test_an_id_of_exactly_the_maximum_length_is_kept():
    """The length limit is inclusive."""
    value = "A" * MAX_SEGMENT
    assert safe_key_component(value) == value


@pytest.mark.parametrize("value", ["", " ", "\n\t ", None, 12345, b"PIA1", ["PIA1"]])
def test_empty_blank_or_non_string_values_are_rejected(value):
    """No segment can be made from nothing or from a non-string."""
    with pytest.raises(ValueError, match="non-empty string"):
        safe_key_component(value)


# --------------------------------------------------------------------------- layout


def test_key_layout():
    """``nasa/{query}/images/{id}{ext}`` and ``nasa/{query}/metadata/{id}.json``."""
    assert query_folder("moon") == "nasa/moon"
    assert image_key("moon", "PIA12345", ".jpg") == "nasa/moon/images/PIA12345.jpg"
    assert metadata_key("moon", "PIA12345") == "nasa/moon/metadata/PIA12345.json"


def test_queries_and_ids_are_sanitized_in_keys():
    """A query like ``apollo 11`` and an id with ``/`` become single safe segments."""
    folder = safe_key_component("apollo 11")
    assert folder.startswith("apollo_11-")
    nasa_id = safe_key_component("a/../b")
    assert image_key("apollo 11", "a/../b", ".png") == f"nasa/{folder}/images/{nasa_id}.png"
    assert metadata_key("apollo 11", "a/../b") == f"nasa/{folder}/metadata/{nasa_id}.json"
    for key in (image_key("../..", "../x", ".png"), metadata_key("a/b", "/etc/passwd")):
        parts = key.split("/")
        assert len(parts) == 4
        assert ".." not in parts


@pytest.mark.parametrize(
    "extension", ["jpg", ".JPG", "", ".", ".jpg/..", "/.png", ".toolong", ". jpg"]
)
def test_a_bad_extension_is_rejected(extension):
    """The extension must look like ``.jpg``: lower case, no separators."""
    with pytest.raises(ValueError, match="image extension"):
        image_key("moon", "PIA1", extension)


@pytest.mark.parametrize("query", ["moon ", "apollo  11"])
def test_keys_refuse_a_query_that_is_not_in_normal_form(query):
    """``"moon "`` would get a folder of its own beside ``moon``'s: refused, naming both."""
    for build in (lambda: query_folder(query), lambda: image_key(query, "PIA1", ".jpg")):
        with pytest.raises(ValueError, match="normal form") as caught:
            build()
        assert repr(query) in str(caught.value)


def test_image_key_rejects_a_bad_query_or_id():
    """Blank query or id -> ValueError, not a key with an empty segment."""
    with pytest.raises(ValueError):
        image_key(" ", "PIA1", ".jpg")
    with pytest.raises(ValueError):
        metadata_key("moon", "")


# --------------------------------------------------------------------------- listing


def test_stored_ids_reads_a_listing_with_a_store_prefix():
    """Full keys with any store prefix in front of ``nasa/`` -> (image ids, metadata ids)."""
    keys = [
        "dagster/nasa/moon/images/PIA1.png",
        "dagster/nasa/moon/images/PIA2.jpg",
        "dagster/nasa/moon/metadata/PIA1.json",
        "dagster/nasa/moon/metadata/PIA3.json",
    ]
    assert stored_ids(keys, "moon") == ({"PIA1", "PIA2"}, {"PIA1", "PIA3"})
    assert stored_ids([k.removeprefix("dagster/") for k in keys], "moon") == (
        {"PIA1", "PIA2"},
        {"PIA1", "PIA3"},
    )
    assert stored_ids(["a/b/c/nasa/moon/images/X.gif"], "moon") == ({"X"}, set())


def test_stored_ids_ignores_other_queries_nested_keys_and_stray_files():
    """Other queries (also ``moonlight``/``honeymoon``), nested keys, ``failures.json``,
    other kinds and non-JSON metadata are not stored ids."""
    keys = [
        "dagster/nasa/moonlight/images/A.png",
        "dagster/nasa/honeymoon/images/B.png",
        "dagster/nasa/mars/metadata/C.json",
        "dagster/nasa/moon/images/sub/D.png",
        "dagster/nasa/moon/metadata/sub/E.json",
        "dagster/nasa/moon/failures.json",
        "dagster/nasa/moon/thumbs/F.png",
        "dagster/nasa/moon/metadata/G.txt",
        "dagster/nasa/moon/",
        "dagster/nasa/moon",
        "dagster/other/moon/images/H.png",
    ]
    assert stored_ids(keys, "moon") == (set(), set())


def test_stored_ids_keeps_dots_inside_ids():
    """Only the last suffix is the extension: ``KSC-69P-0.1.png`` is id ``KSC-69P-0.1``."""
    keys = [
        image_key("moon", "KSC-69P-0.1", ".png"),
        metadata_key("moon", "KSC-69P-0.1"),
        "nasa/moon/metadata/a.json.json",
    ]
    images, metadata = stored_ids(keys, "moon")
    assert images == {"KSC-69P-0.1"}
    assert metadata == {"KSC-69P-0.1", "a.json"}


def test_stored_ids_round_trips_the_keys_it_is_given():
    """Keys made by ``image_key``/``metadata_key`` for an unsafe query and ids come back as
    the ids' safe segments."""
    ids = ["PIA12345", "Moon Landing", "a/b", "Buzz's ~boot", "x" * 500]
    keys = [f"prefix/{image_key('apollo 11', i, '.jpg')}" for i in ids]
    keys += [f"prefix/{metadata_key('apollo 11', i)}" for i in ids[:2]]
    keys += [f"prefix/{image_key('apollo 12', 'other', '.jpg')}"]
    images, metadata = stored_ids(keys, "apollo 11")
    assert images == {safe_key_component(i) for i in ids}
    assert metadata == {safe_key_component(i) for i in ids[:2]}


def test_stored_ids_of_an_empty_listing():
    """Nothing stored -> two empty sets."""
    assert stored_ids([], "moon") == (set(), set())


def test_stored_ids_matches_the_query_folder_as_whole_segments():
    """``mynasa/moon/...`` is not the ``nasa/moon`` folder."""
    images, metadata = stored_ids(
        ["mynasa/moon/images/X.png", "p/mynasa/moon/metadata/X.json", "p/nasa/moon/images/Y.png"],
        "moon",
    )
    assert images == {"Y"} and metadata == set()
