"""The market job: the whole group, for a re-run from the UI (a fresh instance builds it by the
assets' automation condition, ``market_assets.assets.BOOTSTRAP``)."""

import dagster as dg

from market_assets.assets import GROUP

market_job = dg.define_asset_job(
    name="market_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Stock CSVs -> prices -> rolling features -> volume model (published for /predict).",
)
