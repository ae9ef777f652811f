"""The market job: the whole group, requested once by ``sensors.market`` and then from the UI."""

import dagster as dg

from market_assets.assets import GROUP

market_job = dg.define_asset_job(
    name="market_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Stock CSVs -> prices -> rolling features -> volume model (published for /predict).",
)
