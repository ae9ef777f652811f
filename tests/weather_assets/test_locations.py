from pathlib import Path

import pytest

from weather_assets.locations import (
    Location,
    LocationsError,
    load_locations,
    shard_locations,
)

REGISTRY = Path(__file__).parents[2] / "weather_assets" / "locations.csv"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "locations.csv"
    path.write_text(text)
    return path


def test_shipped_registry_has_office_first_and_60_places():
    locations = load_locations(REGISTRY)
    assert locations[0] == Location("office", "Office (Utrecht)", 52.084516, 5.115539)
    assert len(locations) >= 60
    assert len({(loc.lat, loc.lon) for loc in locations}) == len(locations)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("location_id,name,lat\na,A,1\n", "missing lon"),
        (
            "location_id,name,lat,lon\na,A,1,2\na,B,3,4\n",
            "line 3: location_id 'a' duplicates line 2",
        ),
        ("location_id,name,lat,lon\na,A,91,2\n", "line 2: lat 91.0 is outside [-90, 90]"),
        ("location_id,name,lat,lon\na,A,1,-180.5\n", "line 2: lon -180.5 is outside [-180, 180]"),
        ("location_id,name,lat,lon\na,A,north,2\n", "line 2: lat 'north' is not a number"),
        ("location_id,name,lat,lon\na,A,nan,2\n", "line 2: lat nan is outside"),
        ("location_id,name,lat,lon\n,A,1,2\n", "line 2: location_id is empty"),
        ("location_id,name,lat,lon\n", "no locations"),
    ],
)
def test_bad_rows_are_named(tmp_path, body, message):
    with pytest.raises(LocationsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_locations(write(tmp_path, body))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(LocationsError, match="cannot read locations file"):
        load_locations(tmp_path / "nope.csv")


def test_whitespace_is_tolerated(tmp_path):
    locations = load_locations(write(tmp_path, "location_id, name, lat, lon\n a , A , 1.5 , 2\n"))
    assert locations == [Location("a", "A", 1.5, 2.0)]


def test_shards_fit_the_key_limit_and_keep_order():
    locations = [Location(str(i), str(i), 0.0, float(i)) for i in range(125)]
    shards = shard_locations(locations, 60)
    assert [len(s) for s in shards] == [60, 60, 5]
    assert [loc for shard in shards for loc in shard] == locations
    with pytest.raises(ValueError):
        shard_locations(locations, 0)
