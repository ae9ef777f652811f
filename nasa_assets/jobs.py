"""The NASA job: one run per query partition (requested by ``sensors.nasa``)."""

import dagster as dg

from nasa_assets.assets import GROUP

nasa_job = dg.define_asset_job(
    "nasa_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Search one query and store its images (one run per query partition).",
)
