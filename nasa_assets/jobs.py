"""The NASA job: the whole group for one query partition, for runs from the UI or the CLI (new
queries are requested by the assets' automation condition)."""

import dagster as dg

from nasa_assets.assets import GROUP

nasa_job = dg.define_asset_job(
    "nasa_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Search one query and store its images (one run per query partition).",
)
