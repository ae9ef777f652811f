"""The coordinate registry as a Dagster resource, so runs and tests can point at any file."""

from __future__ import annotations

import dagster as dg

from weather_assets.locations import Location, load_locations, shard_locations


class CoordinateRegistry(dg.ConfigurableResource):
    """``LOCATIONS_FILE`` (``location_id,name,lat,lon``), read and validated when a run uses it."""

    locations_file: str

    def load(self) -> list[Location]:
        return load_locations(self.locations_file)

    def shards(self, calls_per_minute: int) -> list[list[Location]]:
        return shard_locations(self.load(), calls_per_minute)
