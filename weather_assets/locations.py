"""The coordinate registry: which lat-lon pairs the weather streams use, and how they shard.

A shard is a slice of the registry that one API key can poll within its per-minute limit, so
adding coordinates means adding keys (or a bigger plan), never silently falling behind.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

REQUIRED_COLUMNS = ("location_id", "name", "lat", "lon")


class LocationsError(ValueError):
    """The locations file cannot be used; the message names the file, row and field."""


@dataclass(frozen=True)
class Location:
    location_id: str
    name: str
    lat: float
    lon: float


def _parse_coordinate(value: str, field: str, low: float, high: float, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LocationsError(f"{where}: {field} {value!r} is not a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise LocationsError(f"{where}: {field} {number} is outside [{low:g}, {high:g}]")
    return number


def load_locations(path: str | Path) -> list[Location]:
    """Read and validate ``location_id,name,lat,lon``; the first bad row stops the load."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise LocationsError(f"cannot read locations file {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise LocationsError(
                f"{path}: header must contain {', '.join(REQUIRED_COLUMNS)}; missing {', '.join(missing)}"
            )
        locations: list[Location] = []
        seen: dict[str, int] = {}
        # Line 1 is the header, so data rows start at line 2.
        for line_no, row in enumerate(reader, start=2):
            where = f"{path} line {line_no}"
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            location_id = row.get("location_id", "")
            if not location_id:
                raise LocationsError(f"{where}: location_id is empty")
            if location_id in seen:
                raise LocationsError(
                    f"{where}: location_id {location_id!r} duplicates line {seen[location_id]}"
                )
            seen[location_id] = line_no
            lat = _parse_coordinate(row.get("lat", ""), "lat", -90.0, 90.0, where)
            lon = _parse_coordinate(row.get("lon", ""), "lon", -180.0, 180.0, where)
            locations.append(Location(location_id, row.get("name") or location_id, lat, lon))
    if not locations:
        raise LocationsError(f"{path}: no locations")
    return locations


def shard_locations(locations: list[Location], calls_per_minute: int) -> list[list[Location]]:
    """Split the registry into shards of at most one key's calls per minute, in file order."""
    if calls_per_minute < 1:
        raise ValueError(f"calls_per_minute must be >= 1, got {calls_per_minute}")
    return [
        locations[start : start + calls_per_minute]
        for start in range(0, len(locations), calls_per_minute)
    ]


class CoordinateRegistry(dg.ConfigurableResource):
    """``LOCATIONS_FILE`` as a resource, read and validated when a run uses it (so runs and tests
    can point at any file)."""

    locations_file: str

    def load(self) -> list[Location]:
        return load_locations(self.locations_file)

    def shards(self, calls_per_minute: int) -> list[list[Location]]:
        return shard_locations(self.load(), calls_per_minute)
