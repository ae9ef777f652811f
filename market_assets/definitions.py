"""The stock market domain's ``dg.Definitions``: its assets, checks and jobs (resources come from the root
``definitions.py``; sensors from ``sensors/``)."""

import dagster as dg

from market_assets import assets, checks, jobs

defs = dg.load_definitions_from_modules([assets, checks, jobs])
