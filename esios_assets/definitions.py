"""The ESIOS domain's ``dg.Definitions``: its assets and checks (resources come from the root
``definitions.py``; it has no job or sensor: past months are backfilled from the UI or the CLI,
and the month in progress is refreshed daily by the assets' automation conditions).
"""

import dagster as dg

from esios_assets import assets, checks

defs = dg.load_definitions_from_modules([assets, checks])
